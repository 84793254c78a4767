// Command controlplane is kube-apiserver, kube-controller-manager and etcd in
// one executable, chosen by the first argument, the way hyperkube once was.
//
// One binary instead of three because the three share most of their code: on
// a two-core machine the cold build and its cache are dominated by compiling
// and linking the Kubernetes tree once, not three times.
package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane etcd|kube-apiserver|kube-controller-manager [flags]")
		os.Exit(2)
	}
	name, rest := os.Args[1], os.Args[2:]
	// Each command reads os.Args itself, so it sees its own name first.
	os.Args = append([]string{name}, rest...)
	switch name {
	case "etcd":
		etcdmain.Main(os.Args)
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown command %q (want etcd, kube-apiserver or kube-controller-manager)\n", name)
		os.Exit(2)
	}
}
