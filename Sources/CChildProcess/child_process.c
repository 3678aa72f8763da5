#define _GNU_SOURCE
#include "child_process.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void close_descriptors(void) {
    if (close_range(3, ~0U, 0) != 0) {
        // Kernels before 5.9: close what a process of ours plausibly has open.
        for (int fd = 3; fd < 65536; fd++) close(fd);
    }
}

// vfork, as posix_spawn does internally: the child borrows this process's memory until
// exec, so starting a child costs no page-table copy and no copy-on-write faults in a
// large, busy process (a fork did, and stalled every other thread). The child touches
// only its own locals and `failure`, and calls only async-signal-safe functions.
int updraft_spawn(const char *path, char *const argv[], char *const envp[], const char *output,
                  int death_signal, pid_t *pid) {
    // No handler of ours may run in the child while it shares our memory.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    volatile int failure = 0;
    pid_t parent = getpid();
    pid_t child = vfork();
    if (child == 0) {
        struct sigaction defaults = {0};
        defaults.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; s++) sigaction(s, &defaults, NULL);
        if (death_signal != 0) {
            if (prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0) {
                failure = errno;
                _exit(127);
            }
            // The parent died between vfork and prctl: nobody would send the signal.
            if (getppid() != parent) _exit(0);
        }
        int in = open("/dev/null", O_RDONLY);
        int out = in < 0 ? -1 : open(output, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) {
            failure = errno;
            _exit(127);
        }
        // Only 0-2 reach the program: a long-lived child must not keep this process's
        // sockets, database or lock files open.
        close_descriptors();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, envp);
        failure = errno;
        _exit(127);
    }
    int error = child < 0 ? errno : failure;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (child < 0) return error;
    if (error != 0) {
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
        return error;
    }
    *pid = child;
    return 0;
}
