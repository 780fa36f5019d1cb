/* twirl/error.h — return codes.
 *
 * Functions that can fail return int: 0 on success, a negative code on
 * failure. A code is either -errno (an operating-system error, passed up
 * unchanged) or one of the TW_E* codes below, which live far below any errno
 * so the two never collide. tw_strerror() names either kind. */
#ifndef TWIRL_ERROR_H
#define TWIRL_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
    TW_ENOMEM = -12, /* same value as -ENOMEM */
    TW_EINVAL = -22, /* same value as -EINVAL */
    TW__ERRBASE = -10000,
    TW_EALREADY_CALLED = -10001,    /* the timer or deferred already fired */
    TW_EALREADY_CANCELLED = -10002, /* the timer was already cancelled */
    TW_ESTALE = -10003,             /* a timer handle whose timer ran or was cancelled long ago */
    TW_ENOTRUNNING = -10004,        /* the reactor is not running */
    TW_ECLOSED = -10005,            /* the object is closed or closing */
    TW_ECANCELED = -10006,          /* the work was cancelled */
    TW_ETIMEDOUT = -10007,          /* the work took longer than allowed */
    TW_EBACKEND = -10008,           /* the requested reactor backend is unknown or unavailable */
    TW_ESYNTAX = -10009,            /* a string (endpoint, option) could not be parsed */
    TW_ELIMIT = -10010,             /* a configured limit was exceeded */
    TW_EPROTO = -10011,             /* the peer broke the protocol */
    TW_EBUSY = -10012,              /* the resource is in use */
    TW_EFULL = -10013,              /* a bounded queue is full */
    TW_EEMPTY = -10014,             /* a bounded queue is empty and may not wait */
    TW_EWRONG_THREAD = -10015,      /* called from a thread that does not own the object */
    TW_ENOTFOUND = -10016,          /* no such name, file or entry */
    TW_ECONNECTION_DONE = -10017,   /* the connection was closed cleanly */
    TW_ECONNECTION_LOST = -10018,   /* the connection was closed uncleanly */
    TW_EDNS = -10019,               /* a host name lookup failed */
    TW_EFIRST_ERROR = -10020,       /* one of several deferreds failed (its failure is the cause) */
    TW_EUNHANDLED = -10021,         /* a callback was missing or an error was not handled */
    TW_EPAUSED = -10022,            /* the object is paused */
    TW_ESTOPPED = -10023,           /* the producer or task was stopped */
    TW_ECYCLE = -10024,             /* a deferred was made to wait on itself */
    TW__ERRLAST = -10025
};

/* Returns a static, human-readable description of code (a TW_E* code or a
 * negative errno). Never returns NULL; unknown codes get a generic text. */
const char *tw_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
