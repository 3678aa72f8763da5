#ifndef UPDRAFT_CCOAP_SHIM_H
#define UPDRAFT_CCOAP_SHIM_H

#include <coap3/coap.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

// The header's version, for comparing with the library loaded at run time.
static inline unsigned int ccoap_header_version(void) {
    return LIBCOAP_VERSION;
}

// `((uint32_t)-1)` is a cast, which Swift does not import.
static const uint32_t CCOAP_IO_NO_WAIT = COAP_IO_NO_WAIT;

// libcoap's syslog-style levels; spelled out so they do not clash with Glibc's.
static const int CCOAP_LOG_EMERG = LOG_EMERG;
static const int CCOAP_LOG_ALERT = LOG_ALERT;
static const int CCOAP_LOG_CRIT = LOG_CRIT;
static const int CCOAP_LOG_ERR = LOG_ERR;
static const int CCOAP_LOG_WARNING = LOG_WARNING;
static const int CCOAP_LOG_NOTICE = LOG_NOTICE;
static const int CCOAP_LOG_INFO = LOG_INFO;
static const int CCOAP_LOG_DEBUG = LOG_DEBUG;

// Adds `fd` to libcoap's epoll set `epfd` with a null data pointer: libcoap 4.3.1
// takes such an event for its timer trigger, which only ends its epoll_wait.
// The event loop uses it to wake a thread sleeping in coap_io_process.
static inline int ccoap_epoll_add_wake(int epfd, int fd) {
    struct epoll_event event;
    memset(&event, 0, sizeof(event));
    event.events = EPOLLIN;
    event.data.ptr = NULL;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event);
}

static inline int ccoap_epoll_remove(int epfd, int fd) {
    struct epoll_event event;
    memset(&event, 0, sizeof(event));
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &event);
}

// Frees a DTLS server "hello" session: the state libcoap 4.3.1 keeps for a peer that
// sent a first ClientHello. It counts against coap_context_set_max_handshake_sessions
// and is freed only 30 s later, one per new peer, with no public call to free it: a flood
// of spoofed ClientHellos locks new devices out. The cookie of the HelloVerifyRequest is
// stateless (an HMAC of the addresses), so the session can go once its datagram is
// handled. This marks it an idle server session in no state, which libcoap's next
// coap_io_process frees (COAP_EVENT_SERVER_SESSION_DEL). It writes the first fields of
// the private struct coap_session_t of 4.3.1 (proto, type, state: enums), after checking
// that they read back what the public getters say. Returns 1 when marked, 0 when the
// session is no hello session, -1 when the layout is not the expected one.
static inline int ccoap_session_retire_hello(coap_session_t *session) {
    int *fields = (int *)(void *)session;
    if (fields[0] != (int)coap_session_get_proto(session) || fields[1] != (int)coap_session_get_type(session) ||
        fields[2] != (int)coap_session_get_state(session) || fields[0] != (int)COAP_PROTO_DTLS) {
        return -1;
    }
    if (fields[1] != (int)COAP_SESSION_TYPE_HELLO) {
        return 0;
    }
    fields[1] = (int)COAP_SESSION_TYPE_SERVER;
    fields[2] = (int)COAP_SESSION_STATE_NONE;
    return 1;
}

// Certificates (PKI) for a server context, from PEM files: the server presents
// cert_file/key_file, and clients must present a certificate signed by the CA in
// ca_file (verified, unexpired, chain depth 3); cn_callback gets each peer's CN.
// libcoap may keep the file names: they must outlive the context.
static inline int ccoap_context_set_pki_pem(coap_context_t *ctx, const char *ca_file, const char *cert_file,
                                            const char *key_file, coap_dtls_cn_callback_t cn_callback, void *arg) {
    coap_dtls_pki_t setup;
    memset(&setup, 0, sizeof(setup));
    setup.version = COAP_DTLS_PKI_SETUP_VERSION;
    setup.verify_peer_cert = 1;
    setup.check_common_ca = 1;
    setup.cert_chain_validation = 1;
    setup.cert_chain_verify_depth = 3;
    setup.validate_cn_call_back = cn_callback;
    setup.cn_call_back_arg = arg;
    setup.pki_key.key_type = COAP_PKI_KEY_PEM;
    setup.pki_key.key.pem.ca_file = ca_file;
    setup.pki_key.key.pem.public_cert = cert_file;
    setup.pki_key.key.pem.private_key = key_file;
    return coap_context_set_pki(ctx, &setup);
}

// Resolves `host` (a name or a numeric IPv4/IPv6 address) into a
// coap_address_t with `port`. Returns 0 or a getaddrinfo EAI_* code.
// With `numeric_only`, names fail at once (EAI_NONAME) instead of blocking
// on a lookup; otherwise call it off the event loop and the Swift
// cooperative thread pool.
static inline int ccoap_address_resolve(const char *host, uint16_t port, int numeric_only, coap_address_t *out) {
    struct addrinfo hints;
    struct addrinfo *result = NULL;
    struct addrinfo *entry;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = numeric_only ? AI_NUMERICHOST : 0;
    rc = getaddrinfo(host, NULL, &hints, &result);
    if (rc != 0) {
        return rc;
    }
    rc = EAI_FAMILY;
    coap_address_init(out);
    for (entry = result; entry != NULL; entry = entry->ai_next) {
        if ((entry->ai_family == AF_INET || entry->ai_family == AF_INET6) &&
            entry->ai_addrlen <= sizeof(out->addr)) {
            memcpy(&out->addr, entry->ai_addr, entry->ai_addrlen);
            out->size = entry->ai_addrlen;
            coap_address_set_port(out, port);
            rc = 0;
            break;
        }
    }
    freeaddrinfo(result);
    return rc;
}

// Writes the numeric host of `address` into `buffer` and returns its port,
// or -1 for an address family other than IPv4/IPv6.
static inline int ccoap_address_format(const coap_address_t *address, char *buffer, size_t length) {
    switch (address->addr.sa.sa_family) {
    case AF_INET:
        if (inet_ntop(AF_INET, &address->addr.sin.sin_addr, buffer, (socklen_t)length) == NULL) {
            return -1;
        }
        return ntohs(address->addr.sin.sin_port);
    case AF_INET6:
        if (inet_ntop(AF_INET6, &address->addr.sin6.sin6_addr, buffer, (socklen_t)length) == NULL) {
            return -1;
        }
        return ntohs(address->addr.sin6.sin6_port);
    default:
        return -1;
    }
}

// Binds and closes a UDP socket on `address` without SO_REUSEADDR; returns 0
// or the errno of bind. libcoap sets SO_REUSEADDR on its UDP sockets, and
// Linux then lets a second endpoint bind a port that is in use: this probe
// notices what libcoap's own bind would not.
static inline int ccoap_udp_bind_probe(const coap_address_t *address) {
    int result;
    int fd = socket(address->addr.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return errno;
    }
    result = bind(fd, &address->addr.sa, address->size) == 0 ? 0 : errno;
    close(fd);
    return result;
}

#endif
