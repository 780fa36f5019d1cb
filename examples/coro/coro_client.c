/* coro_client — the inlineCallbacks client of the seeds, in C: one function
 * that reads top to bottom, waiting where Twisted's would `yield`:
 *
 *     @inlineCallbacks
 *     def main(reactor):
 *         stream = yield connect(reactor, "tcp:host=127.0.0.1:port=8000")
 *         for message in messages:
 *             stream.write(message + b"\n")
 *             line = yield stream.readUntil(b"\n")
 *             print("Server said:", line)
 *         yield stream.close()
 *         reactor.stop()
 *     reactor.callWhenRunning(main, reactor)
 *     reactor.run()
 *
 * Usage: coro_client [HOST [PORT [MESSAGE...]]] (default 127.0.0.1 8000
 * "hello, world"). Prints "Server said: <reply>" for each message, then
 * "Connection closed - goodbye!"; or "Connection failed - goodbye!
 * (<reason>)". Exit status 0 when every reply came back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/coro_net.h"

typedef struct job {
    tw_reactor *r;
    char where[300];
    char **messages;
    int count;
    int status; /* the exit status */
} job;

static tw_result client(void *arg)
{
    job *j = arg;
    tw_coro_stream *s;
    tw_failure *err = NULL;
    if (tw_coro_connect(NULL, j->where, &s, &err) < 0) {
        printf("Connection failed - goodbye! (%s)\n", tw_failure_message(err));
    } else {
        int replies = 0;
        for (int i = 0; i < j->count; i++) {
            tw_coro_bytes line;
            if (tw_coro_write_str(s, j->messages[i], &err) < 0 ||
                tw_coro_write_str(s, "\n", &err) < 0 ||
                tw_coro_read_until(s, "\n", 64 * 1024, &line, &err) < 0) /* the yield */
                break;
            printf("Server said: %.*s", (int)line.len, line.data);
            replies++;
        }
        if (err) {
            printf("Connection lost - goodbye! (%s)\n", tw_failure_message(err));
            tw_coro_abort(s);
        } else if (tw_coro_close(s, &err) == 0) { /* waits until everything is sent */
            printf("Connection closed - goodbye!\n");
            j->status = replies == j->count ? 0 : 1;
        } else {
            printf("Connection lost while closing - goodbye! (%s)\n", tw_failure_message(err));
        }
    }
    tw_failure_unref(err);
    fflush(stdout);
    tw_reactor_stop(tw_coro_reactor());
    return TW_RESULT_NONE;
}

/* Twisted's callWhenRunning(main): the coroutine starts with the loop. */
static void start(void *arg)
{
    job *j = arg;
    tw_deferred_unref(tw_coro_spawn(j->r, client, j, NULL));
}

int main(int argc, char **argv)
{
    static char *hello[] = { "hello, world" };
    job j = { .messages = argc > 3 ? argv + 3 : hello,
              .count = argc > 3 ? argc - 3 : 1,
              .status = 1 };
    snprintf(j.where, sizeof j.where, "tcp:host=%s:port=%s", argc > 1 ? argv[1] : "127.0.0.1",
             argc > 2 ? argv[2] : "8000");
    tw_reactor *r;
    int rc;
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (j.r = r, rc = tw_call_when_running(r, start, &j)) < 0) {
        fprintf(stderr, "coro_client: %s\n", tw_strerror(rc));
        tw_reactor_free(r);
        return 1;
    }
    rc = tw_reactor_run(r);
    tw_reactor_free(r);
    return rc < 0 ? 1 : j.status;
}
