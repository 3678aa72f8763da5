#define _GNU_SOURCE
#include "child_process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void close_descriptors_except(int keep) {
    if (keep > 3) close_range(3, (unsigned)keep - 1, 0);
    if (close_range((unsigned)keep + 1, ~0U, 0) != 0) {
        // Kernels before 5.9: close what a process of ours plausibly has open.
        for (int fd = 3; fd < 65536; fd++) if (fd != keep) close(fd);
    }
}

static void fail(int report, int error) {
    ssize_t written = write(report, &error, sizeof error);
    (void)written;
    _exit(127);
}

int updraft_spawn(const char *path, char *const argv[], char *const envp[], const char *output,
                  int death_signal, pid_t *pid) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        int error = errno;
        close(report[0]);
        close(report[1]);
        return error;
    }
    if (child == 0) {
        close(report[0]);
        struct sigaction defaults = {0};
        defaults.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; s++) sigaction(s, &defaults, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (death_signal != 0) {
            if (prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0) fail(report[1], errno);
            // The parent died between fork and prctl: nobody would send the signal.
            if (getppid() != parent) _exit(0);
        }
        int in = open("/dev/null", O_RDONLY);
        if (in < 0) fail(report[1], errno);
        int out = open(output, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (out < 0) fail(report[1], errno);
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) fail(report[1], errno);
        if (in > 2) close(in);
        if (out > 2) close(out);
        // Only 0-2 and the report pipe (closed by exec) reach the child: a long-lived child
        // must not keep this process's sockets, database or lock files open.
        close_descriptors_except(report[1]);
        execve(path, argv, envp);
        fail(report[1], errno);
    }
    close(report[1]);
    int error = 0;
    ssize_t got;
    do {
        got = read(report[0], &error, sizeof error);
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof error) {
        // exec failed: reap the child, report why.
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
        return error;
    }
    *pid = child;
    return 0;
}
