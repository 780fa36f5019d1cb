/* log_capture.c — collects tw_log messages for tests that check a reason
 * was logged. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/testing.h"

enum { MAX_KEPT = 4096 }; /* messages kept; later ones are only counted */

struct tw_test_log {
    pthread_mutex_t lock; /* tw_log may be called from any thread */
    tw_log_level old_level;
    char **msgs;
    size_t n, cap, total;
};

static void capture(tw_log_level level, const char *domain, const char *message, void *arg)
{
    tw_test_log *l = arg;
    pthread_mutex_lock(&l->lock);
    l->total++;
    if (l->n < MAX_KEPT) {
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 16;
            char **grown = realloc(l->msgs, cap * sizeof *grown);
            if (grown) {
                l->msgs = grown;
                l->cap = cap;
            }
        }
        if (l->n < l->cap) {
            size_t need = strlen(domain) + strlen(message) + 3;
            char *m = malloc(need);
            if (m) {
                snprintf(m, need, "%s: %s", domain, message);
                l->msgs[l->n++] = m;
            }
        }
    }
    pthread_mutex_unlock(&l->lock);
}

tw_test_log *tw_test_log_capture(tw_log_level min)
{
    tw_test_log *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    pthread_mutex_init(&l->lock, NULL);
    l->old_level = tw_log_get_level();
    tw_log_set_level(min);
    tw_log_set_handler(capture, l);
    return l;
}

size_t tw_test_log_count(const tw_test_log *l)
{
    return l->total;
}

bool tw_test_log_contains(const tw_test_log *l, const char *domain, const char *needle)
{
    size_t dlen = domain ? strlen(domain) : 0;
    for (size_t i = 0; i < l->n; i++) {
        const char *m = l->msgs[i];
        if (domain && (strncmp(m, domain, dlen) != 0 || m[dlen] != ':'))
            continue;
        if (strstr(domain ? m + dlen + 2 : m, needle))
            return true;
    }
    return false;
}

const char *tw_test_log_message(const tw_test_log *l, size_t n)
{
    return n < l->n ? l->msgs[n] : NULL;
}

void tw_test_log_clear(tw_test_log *l)
{
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->n; i++)
        free(l->msgs[i]);
    l->n = 0;
    l->total = 0;
    pthread_mutex_unlock(&l->lock);
}

void tw_test_log_release(tw_test_log *l)
{
    if (!l)
        return;
    tw_log_set_handler(NULL, NULL);
    tw_log_set_level(l->old_level);
    tw_test_log_clear(l);
    free(l->msgs);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
