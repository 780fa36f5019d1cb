/* tt_web.h — an HTTP server for tests that talk to it with real clients
 * (curl, ab, wrk, Twisted's Agent): a site on its own reactor thread, on an
 * ephemeral loopback port. Not shipped.
 *
 * Resources:
 *   /            "Hello, World!" (text/plain)
 *   /echo        streams the request body back as it arrives (stream_body;
 *                chunked response; 100-continue honoured); GET: empty body
 *   /headers     the request's fields, one "name: value" line each
 *   /smuggled    counts its requests (tt_web.smuggled): must stay 0 in the
 *                request-smuggling tests
 *   /static/...  files under the directory given (if any) */
#ifndef TWIRL_TT_WEB_H
#define TWIRL_TT_WEB_H

#include <pthread.h>
#include <stdint.h>

#include "twirl/tcp.h"
#include "twirl/web.h"

typedef struct tt_web {
    tw_reactor *r;
    tw_site *site;
    tw_port *port;
    tw_access_log *log;
    pthread_t thread;
    uint16_t port_num;
    volatile int smuggled;
    volatile int echo_done;
} tt_web;

/* Starts the server thread. static_dir may be NULL; log_path (may be NULL)
 * gets the access log. Returns 0 or a negative code. */
int tt_web_start(tt_web *w, const char *static_dir, const char *log_path);

/* Stops the reactor, joins the thread, frees everything. */
void tt_web_stop(tt_web *w);

#endif
