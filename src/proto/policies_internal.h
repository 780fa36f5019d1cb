/* policies_internal.h — what the policy sources share: the wrapping
 * factory every policy is (policies.c), and the calls a policy makes to
 * build its wrappers. */
#ifndef TWIRL_PROTO_POLICIES_INTERNAL_H
#define TWIRL_PROTO_POLICIES_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/policies.h"

enum tw__wf_kind {
    TW__WF_PLAIN = 1,
    TW__WF_TIMEOUT,
    TW__WF_LIMIT_TOTAL,
    TW__WF_LIMIT_PEER,
    TW__WF_THROTTLING
};

typedef struct tw__wfactory tw__wfactory;
struct tw__wfactory {
    tw_factory base; /* first */
    tw_factory *inner;
    const tw_wrapper_ops *hooks; /* never NULL (an empty table) */
    int kind;
    /* Policies: the connection counted at build is over (lost, or
     * destroyed without having been connected). Once per wrapper. */
    void (*release_conn)(tw__wfactory *wf, tw_protocol_wrapper *w);
    /* Frees the policy's own state, just before the factory's memory. */
    void (*fini)(tw__wfactory *wf);
    tw_protocol_wrapper *head; /* open connections */
    size_t open;
    size_t live; /* wrappers built and not yet destroyed */
    bool owner_gone;
};

static inline tw__wfactory *tw__wf_of(const tw_protocol_wrapper *w)
{
    return (tw__wfactory *)w->base.factory;
}

/* The factory hooks every wrapping factory shares (the start hook is also
 * how tw_is_wrapping_factory recognises one). */
void tw__wf_start(tw_factory *f);
void tw__wf_stop(tw_factory *f);
void tw__wf_started(tw_factory *f, tw_connector *c);
void tw__wf_failed(tw_factory *f, tw_connector *c, const tw_failure *reason);
void tw__wf_lost(tw_factory *f, tw_connector *c, const tw_failure *reason);

#define TW__WRAPPING_FACTORY_OPS(build)                                                        \
    {                                                                                          \
        .build_protocol = (build), .start_factory = tw__wf_start, .stop_factory = tw__wf_stop, \
        .started_connecting = tw__wf_started, .client_connection_failed = tw__wf_failed,       \
        .client_connection_lost = tw__wf_lost                                                  \
    }

/* A zeroed factory of size bytes (a struct starting with tw__wfactory)
 * around inner, or NULL (inner NULL, out of memory). hooks may be NULL. */
tw__wfactory *tw__wf_alloc(size_t size, tw_factory *inner, const tw_wrapper_ops *hooks,
                           const tw_factory_ops *ops, int kind);
/* f as a wrapping factory of that kind (0: any), or NULL. */
tw__wfactory *tw__wf_as(const tw_factory *f, int kind);
/* The protocol to wrap: the build_wrapped hook's, or the inner factory's. */
tw_protocol *tw__wf_build_inner(tw__wfactory *wf, const tw_address *addr);
/* Wraps inner (owned from here on: freed on failure); NULL when out of
 * memory (logged). */
tw_protocol *tw__wf_wrap(tw__wfactory *wf, tw_protocol *inner, const tw_address *addr);
/* build_protocol of a factory that only wraps. */
tw_protocol *tw__wf_plain_build(tw_factory *f, const tw_address *addr);

#endif
