/* web_hello — a twisted.web site in C: "Hello, World!" from memory at "/",
 * and a directory served by the static file resource under "/static/".
 * Twisted's equivalent:
 *
 *     root = resource.Resource()
 *     root.putChild(b"", Hello())
 *     root.putChild(b"static", static.File(DIR))
 *     reactor.listenTCP(PORT, server.Site(root))
 *
 * Usage: example_web_hello PORT [DIR]      (PORT 0 picks a free port)
 * It prints "listening on 127.0.0.1:PORT" and runs until SIGINT/SIGTERM. */
#include <stdio.h>
#include <stdlib.h>

#include "twirl/tcp.h"
#include "twirl/web.h"

static int hello_get(tw_resource *r, tw_request *req)
{
    return tw_request_respond(req, 200, "text/plain", "Hello, World!", 13);
}

static const tw_resource_ops hello_ops = { .render_get = hello_get };

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [DIR]\n", argv[0]);
        return 2;
    }
    tw_reactor *r;
    if (tw_reactor_new(NULL, &r) < 0)
        return 1;
    tw_resource *root = tw_resource_new(NULL);
    if (!root || tw_resource_put_child(root, "", tw_resource_new(&hello_ops)) < 0)
        return 1;
    if (argc > 2) {
        tw_resource *files;
        int rc = tw_static_file_new(argv[2], NULL, &files);
        if (rc < 0) {
            fprintf(stderr, "%s: %s\n", argv[2], tw_strerror(rc));
            return 1;
        }
        tw_resource_put_child(root, "static", files);
    }
    tw_site_options o;
    tw_site_options_init(&o);
    o.max_connections = 0; /* benchmarks open many */
    tw_site *site;
    if (tw_site_new(r, root, &o, &site) < 0)
        return 1;
    tw_port *port;
    int rc =
        tw_listen_tcp(r, "127.0.0.1", (uint16_t)atoi(argv[1]), NULL, tw_site_factory(site), &port);
    if (rc < 0) {
        fprintf(stderr, "listen: %s\n", tw_strerror(rc));
        return 1;
    }
    printf("listening on 127.0.0.1:%u\n", tw_address_port(tw_port_address(port)));
    fflush(stdout);
    tw_reactor_run(r); /* until SIGINT or SIGTERM */
    tw_port_stop_listening(port);
    tw_site_free(site);
    tw_reactor_free(r);
    return 0;
}
