/*
 * pause: PID 1 of a pod sandbox (localhost/e2e/pause:1), and usable as a
 * plain `pause` anywhere else. No arguments.
 *
 * With shareProcessNamespace every container's processes are in this PID
 * namespace, and orphans are re-parented here: without reaping they would
 * stay zombies for the pod's lifetime (busybox `sleep` as PID 1 does not
 * reap). containerd stops a sandbox with SIGKILL, so the clean exit on
 * SIGTERM/SIGINT only matters when run by hand or under docker.
 *
 * Everything happens in the main loop, not in handlers: handlers only set
 * flags, so no async-signal-safety questions arise.
 */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static volatile sig_atomic_t children;

static void on_stop(int sig) { (void)sig; stop = 1; }
static void on_child(int sig) { (void)sig; children = 1; }

int main(void)
{
	struct sigaction sa = {0};
	sigset_t block, old;

	/* A PID 1 gets no default action for signals: install handlers or
	 * SIGTERM would be ignored. */
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, 0);
	sigaction(SIGINT, &sa, 0);
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, 0);

	/* Block the signals we wait for, and unblock them only inside
	 * sigsuspend: a signal arriving between the flag checks and the
	 * sleep would otherwise be missed until the next one. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);

	for (;;) {
		if (children) {
			children = 0;
			/* One SIGCHLD may stand for many exits: reap until none
			 * is left. */
			while (waitpid(-1, 0, WNOHANG) > 0)
				;
		}
		if (stop)
			return 0;
		sigsuspend(&old);
	}
}
