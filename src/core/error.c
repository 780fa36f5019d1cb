/* error.c — names for return codes. */
#include <string.h>

#include "twirl/error.h"

static const char *const texts[] = {
    [-(TW_EALREADY_CALLED - TW__ERRBASE)] = "already called",
    [-(TW_EALREADY_CANCELLED - TW__ERRBASE)] = "already cancelled",
    [-(TW_ESTALE - TW__ERRBASE)] = "stale handle (the timer ran or was cancelled long ago)",
    [-(TW_ENOTRUNNING - TW__ERRBASE)] = "reactor not running",
    [-(TW_ECLOSED - TW__ERRBASE)] = "closed",
    [-(TW_ECANCELED - TW__ERRBASE)] = "cancelled",
    [-(TW_ETIMEDOUT - TW__ERRBASE)] = "timed out",
    [-(TW_EBACKEND - TW__ERRBASE)] = "unknown or unavailable reactor backend",
    [-(TW_ESYNTAX - TW__ERRBASE)] = "syntax error",
    [-(TW_ELIMIT - TW__ERRBASE)] = "limit exceeded",
    [-(TW_EPROTO - TW__ERRBASE)] = "protocol error",
    [-(TW_EBUSY - TW__ERRBASE)] = "busy",
    [-(TW_EFULL - TW__ERRBASE)] = "queue full",
    [-(TW_EEMPTY - TW__ERRBASE)] = "queue empty",
    [-(TW_EWRONG_THREAD - TW__ERRBASE)] = "called from the wrong thread",
    [-(TW_ENOTFOUND - TW__ERRBASE)] = "not found",
    [-(TW_ECONNECTION_DONE - TW__ERRBASE)] = "connection was closed cleanly",
    [-(TW_ECONNECTION_LOST - TW__ERRBASE)] = "connection was lost",
    [-(TW_EDNS - TW__ERRBASE)] = "host name lookup failed",
    [-(TW_EFIRST_ERROR - TW__ERRBASE)] = "one of the deferreds failed",
    [-(TW_EUNHANDLED - TW__ERRBASE)] = "not handled",
    [-(TW_EPAUSED - TW__ERRBASE)] = "paused",
    [-(TW_ESTOPPED - TW__ERRBASE)] = "stopped",
    [-(TW_ECYCLE - TW__ERRBASE)] = "a deferred was made to wait on itself",
};

const char *tw_strerror(int code)
{
    if (code == 0)
        return "success";
    if (code < TW__ERRBASE && code > TW__ERRLAST) {
        const char *t = texts[-(code - TW__ERRBASE)];
        return t ? t : "unknown twirl error";
    }
    if (code < 0 && code > TW__ERRBASE) {
        const char *t = strerrordesc_np(-code);
        return t ? t : "unknown system error";
    }
    return "unknown error";
}
