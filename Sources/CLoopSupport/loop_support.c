#include "loop_support.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>

int loop_support_wakefd_create(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void loop_support_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

/// Calls `visit` for each descriptor in the interest list of `epoll_fd` (the `tfd:`
/// lines of its fdinfo) and returns how many visits returned 1, -1 on error.
static int for_each_epoll_target(int epoll_fd, int (*visit)(int fd, int argument), int argument) {
    char path[64];
    char line[256];
    int count = 0;
    FILE *file;

    if (epoll_fd < 0) {
        return -1;
    }
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", epoll_fd);
    file = fopen(path, "re");
    if (file == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), file) != NULL) {
        int fd;
        if (sscanf(line, "tfd: %d", &fd) == 1 && visit(fd, argument) == 1) {
            count++;
        }
    }
    fclose(file);
    return count;
}

static int set_cloexec(int fd, int unused) {
    (void)unused;
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC)) {
        fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
    return 1;
}

int loop_support_epoll_set_cloexec(int epoll_fd) {
    if (epoll_fd < 0) {
        return -1;
    }
    set_cloexec(epoll_fd, 0);
    return for_each_epoll_target(epoll_fd, set_cloexec, 0);
}

static int set_udp_rcvbuf(int fd, int bytes) {
    int type = 0;
    socklen_t length = sizeof(type);
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == SOCK_DGRAM
        && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) == 0;
}

int loop_support_epoll_set_udp_rcvbuf(int epoll_fd, int bytes) {
    return for_each_epoll_target(epoll_fd, set_udp_rcvbuf, bytes);
}
