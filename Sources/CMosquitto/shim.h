#ifndef UPDRAFT_CMOSQUITTO_SHIM_H
#define UPDRAFT_CMOSQUITTO_SHIM_H

#include <mosquitto.h>

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

#endif
