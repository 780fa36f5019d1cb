/* site.c — the site (Twisted's Site, a factory): options, the per-reactor
 * list of sites, the cached Date line, and the site's lifetime, which may
 * outlast tw_site_free while connections or unfinished requests remain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "web/web_internal.h"

/* ------------------------------------------------------------ time and date */

static int64_t wall_seconds(tw_site *s)
{
    if (s->o.wall_clock)
        return s->o.wall_clock(s->o.wall_clock_arg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts); /* vDSO: no system call */
    return (int64_t)ts.tv_sec;
}

static const char wday_names[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char month_names[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static void refresh_date(tw_site *s)
{
    int64_t now = wall_seconds(s);
    if (now == s->date_sec && s->date_line_len)
        return;
    s->date_sec = now;
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    s->date_line_len = (size_t)snprintf(s->date_line, sizeof s->date_line,
                                        "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                                        wday_names[tm.tm_wday], tm.tm_mday, month_names[tm.tm_mon],
                                        tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    snprintf(s->log_time, sizeof s->log_time, "[%02d/%s/%04d:%02d:%02d:%02d +0000]", tm.tm_mday,
             month_names[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

const char *tw__site_date_line(tw_site *s, size_t *len)
{
    refresh_date(s);
    *len = s->date_line_len;
    return s->date_line;
}

const char *tw__site_log_time(tw_site *s)
{
    refresh_date(s);
    return s->log_time;
}

/* ------------------------------------------------------------ the site */

/* Per-reactor list of sites, so that freeing the reactor first (as the
 * twirl command does, before its stop hook frees the site) leaves each site
 * knowing its timers are gone. */
typedef struct web_slot {
    tw_site *sites;
} web_slot;

static void web_cleanup(tw_reactor *r, void *arg)
{
    web_slot *ws = arg;
    for (tw_site *s = ws->sites; s; s = s->slot_next) {
        tw_timer_cancel(s->sweep);
        tw_timer_cancel(s->log_flush);
        s->sweep = s->log_flush = TW_TIMER_NONE;
        if (s->o.access_log)
            tw_access_log_flush(s->o.access_log);
        s->reactor_gone = true;
    }
    *tw__reactor_slot(r, TW__SLOT_WEB) = NULL;
    free(ws);
}

static int site_link(tw_site *s)
{
    void **slot = tw__reactor_slot(s->reactor, TW__SLOT_WEB);
    web_slot *ws = *slot;
    if (!ws) {
        if (!(ws = calloc(1, sizeof *ws)))
            return TW_ENOMEM;
        if (tw__reactor_on_free(s->reactor, web_cleanup, ws) < 0) {
            free(ws);
            return TW_ENOMEM;
        }
        *slot = ws;
    }
    s->slot_next = ws->sites;
    if (ws->sites)
        ws->sites->slot_prev = s;
    ws->sites = s;
    return 0;
}

static void site_unlink(tw_site *s)
{
    if (s->reactor_gone)
        return;
    web_slot *ws = *tw__reactor_slot(s->reactor, TW__SLOT_WEB);
    if (!ws)
        return;
    if (s->slot_prev)
        s->slot_prev->slot_next = s->slot_next;
    else
        ws->sites = s->slot_next;
    if (s->slot_next)
        s->slot_next->slot_prev = s->slot_prev;
}

void tw_site_options_init(tw_site_options *o)
{
    memset(o, 0, sizeof *o);
    tw_http_limits_init(&o->limits);
    o->header_timeout = 20;
    o->body_timeout = 30;
    o->idle_timeout = 15;
    o->linger_timeout = 2;
    o->max_connections = 10000;
    o->server_name = "twirl";
}

static void log_flush_fired(void *arg)
{
    tw_site *s = arg;
    s->log_flush = TW_TIMER_NONE;
    if (s->o.access_log)
        tw__access_log_tick(s->o.access_log);
    s->log_flush = tw_call_later(s->reactor, 1.0, log_flush_fired, s);
}

int tw_site_new(tw_reactor *r, tw_resource *root, const tw_site_options *opts, tw_site **out)
{
    *out = NULL;
    if (!r || !root) {
        tw_resource_unref(root);
        return TW_EINVAL;
    }
    tw_site *s = calloc(1, sizeof *s);
    if (!s) {
        tw_resource_unref(root);
        return TW_ENOMEM;
    }
    if (opts)
        s->o = *opts;
    else
        tw_site_options_init(&s->o);
    if (s->o.limits.max_headers == 0)
        tw_http_limits_init(&s->o.limits);
    s->factory = (tw_factory)TW_FACTORY_INIT(&tw__hconn_ops, s);
    s->reactor = r;
    s->root = root;
    const char *name = s->o.server_name ? s->o.server_name : "twirl";
    s->o.server_name = NULL; /* not kept: copied below */
    if (*name) {
        int n = snprintf(s->server_line, sizeof s->server_line, "Server: %s\r\n", name);
        bool ok = n > 0 && (size_t)n < sizeof s->server_line;
        for (const char *q = name; ok && *q; q++)
            ok = (unsigned char)*q >= 0x20 && *q != 0x7f;
        if (!ok) {
            free(s);
            tw_resource_unref(root);
            return TW_EINVAL;
        }
        s->server_line_len = (size_t)n;
    }
    double durs[TQ_COUNT] = { s->o.idle_timeout, s->o.header_timeout, s->o.body_timeout,
                              s->o.linger_timeout };
    for (int q = 0; q < TQ_COUNT; q++)
        s->tq[q].dur_ns = durs[q] > 0 ? (int64_t)(durs[q] * 1e9) : 0;
    if (site_link(s) < 0) {
        free(s);
        tw_resource_unref(root);
        return TW_ENOMEM;
    }
    if (s->o.access_log)
        s->log_flush = tw_call_later(r, 1.0, log_flush_fired, s);
    *out = s;
    return 0;
}

tw_factory *tw_site_factory(tw_site *s)
{
    return &s->factory;
}

size_t tw_site_connection_count(const tw_site *s)
{
    return s->conns;
}

tw_reactor *tw_site_reactor(const tw_site *s)
{
    return s->reactor;
}

tw_resource *tw_site_root(const tw_site *s)
{
    return s->root;
}

void tw_site_free(tw_site *s)
{
    if (!s)
        return;
    if (!s->dying) {
        s->dying = true;
        if (!s->reactor_gone) {
            tw_timer_cancel(s->sweep);
            tw_timer_cancel(s->log_flush);
        }
        s->sweep = s->log_flush = TW_TIMER_NONE;
        if (s->o.access_log)
            tw_access_log_flush(s->o.access_log);
        for (tw__hconn *c = s->conn_list; c; c = c->next)
            if (c->base.transport)
                tw_transport_abort_connection(c->base.transport);
    }
    if (s->conns > 0 || s->detached > 0)
        return; /* the last connection_lost (or detached finish) frees it */
    site_unlink(s);
    tw_resource_unref(s->root);
    free(s);
}
