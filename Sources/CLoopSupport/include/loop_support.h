#ifndef UPDRAFT_CLOOPSUPPORT_H
#define UPDRAFT_CLOOPSUPPORT_H

// Helpers of the event loops of the C-library wrappers (Mosquitto, CoAP) that Swift
// cannot call directly: Glibc's Swift module does not export <sys/eventfd.h>, prctl is
// variadic, and the descriptors a C library registers in its epoll set are only listed
// in /proc/self/fdinfo.

/// A non-blocking, close-on-exec eventfd that wakes a loop; -1 and errno on failure.
int loop_support_wakefd_create(void);

/// Names the calling thread (Linux keeps the first 15 bytes) for debuggers and `top -H`.
void loop_support_set_thread_name(const char *name);

/// Sets FD_CLOEXEC on the epoll descriptor `epoll_fd` and on every descriptor in its
/// interest list (sockets, timerfd). libcoap 4.3.1 opens them without close-on-exec: a
/// child process spawned by the application would inherit them and keep the ports bound
/// after the context is freed. Returns the number of descriptors found, -1 on error.
int loop_support_epoll_set_cloexec(int epoll_fd);

/// Sets SO_RCVBUF to `bytes` (the kernel caps it at net.core.rmem_max) on every UDP
/// socket in the interest list of `epoll_fd` (a CoAP server's endpoints). A release
/// wakes thousands of devices at once; with the default buffer (about 200 small
/// datagrams) the burst overflows it and each dropped request costs its device a 2-3 s
/// retransmission. Returns the number of sockets changed, -1 on error.
int loop_support_epoll_set_udp_rcvbuf(int epoll_fd, int bytes);

#endif
