/* memory.c — Twisted's MemoryReactor: tw_listen/tw_connect recorded, not
 * performed (through the net layer's intercept). */
#include <stdlib.h>
#include <string.h>

#include "net/net_internal.h"
#include "twirl/testing.h"

struct tw_test_memory {
    tw_reactor *reactor;
    tw__net_intercept intercept;
    tw_test_listen *listens;
    size_t nlistens;
    tw_test_connect *connects;
    size_t nconnects;
};

static void *grow(void *array, size_t n, size_t size)
{
    return realloc(array, (n + 1) * size);
}

static void on_listen(void *arg, tw_port *port, const tw_listen_options *opts)
{
    tw_test_memory *m = arg;
    tw_test_listen *l = grow(m->listens, m->nlistens, sizeof *l);
    if (!l)
        return; /* the record is lost; the port still exists */
    m->listens = l;
    l[m->nlistens++] =
        (tw_test_listen){ *tw_port_address(port), *opts, tw_port_factory(port), port };
}

static void on_connect(void *arg, tw_connector *c, const tw_connect_options *opts)
{
    tw_test_memory *m = arg;
    tw_test_connect *k = grow(m->connects, m->nconnects, sizeof *k);
    if (!k)
        return;
    m->connects = k;
    k = &k[m->nconnects++];
    memset(k, 0, sizeof *k);
    k->address = *tw_connector_destination(c);
    k->options = *opts;
    if (opts->bind) {
        k->bind = *opts->bind;
        k->options.bind = &k->bind;
    }
    k->factory = tw__connector_factory(c);
    k->connector = c;
}

tw_test_memory *tw_test_memory_install(tw_reactor *r)
{
    tw_test_memory *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->reactor = r;
    m->intercept = (tw__net_intercept){ on_listen, on_connect, m };
    if (tw__net_set_intercept(r, &m->intercept) < 0) {
        free(m);
        return NULL;
    }
    return m;
}

void tw_test_memory_free(tw_test_memory *m)
{
    if (!m)
        return;
    tw__net_set_intercept(m->reactor, NULL);
    free(m->listens);
    free(m->connects);
    free(m);
}

size_t tw_test_memory_listens(const tw_test_memory *m)
{
    return m->nlistens;
}

const tw_test_listen *tw_test_memory_listen(const tw_test_memory *m, size_t i)
{
    return i < m->nlistens ? &m->listens[i] : NULL;
}

size_t tw_test_memory_connects(const tw_test_memory *m)
{
    return m->nconnects;
}

const tw_test_connect *tw_test_memory_connect(const tw_test_memory *m, size_t i)
{
    return i < m->nconnects ? &m->connects[i] : NULL;
}

int tw_test_memory_fail(tw_test_memory *m, size_t i, int code)
{
    if (i >= m->nconnects || !m->connects[i].connector)
        return TW_EINVAL;
    tw_connector *c = m->connects[i].connector;
    m->connects[i].connector = NULL; /* it may be freed by the failure */
    return tw__connector_fail(c, code);
}
