#ifndef UPDRAFT_CMOSQUITTO_SHIM_H
#define UPDRAFT_CMOSQUITTO_SHIM_H

#include <mosquitto.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

// The header's version, for comparing with the library loaded at run time
// (`mosquitto_lib_version`). The macro is an expression Swift does not import.
static inline int cmosquitto_header_version(void) {
    return LIBMOSQUITTO_VERSION_NUMBER;
}

// Log levels are `(1<<n)` macros; spelled out so Swift sees plain constants.
static const int CMOSQUITTO_LOG_INFO = MOSQ_LOG_INFO;
static const int CMOSQUITTO_LOG_NOTICE = MOSQ_LOG_NOTICE;
static const int CMOSQUITTO_LOG_WARNING = MOSQ_LOG_WARNING;
static const int CMOSQUITTO_LOG_ERR = MOSQ_LOG_ERR;
static const int CMOSQUITTO_LOG_DEBUG = MOSQ_LOG_DEBUG;

// Wake-up descriptor for the event loop: Glibc's Swift module does not
// export <sys/eventfd.h>.
static inline int cmosquitto_wakefd_create(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

// Names the calling thread (first 15 bytes) for debuggers and `top -H`;
// prctl is variadic, which Swift cannot call.
static inline void cmosquitto_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

#endif
