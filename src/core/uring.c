/* uring.c — the io_uring backend.
 *
 * Two kinds of work go through one ring:
 *  - readiness, for fd watchers, listening sockets and connects: a one-shot
 *    POLL_ADD per registration, re-armed after its callback while the owner
 *    still wants events (level-triggered, like epoll's level mode);
 *  - completions, for stream connections (src/net/uring_stream.c): multishot
 *    receives into a ring of provided buffers shared by every connection,
 *    and sends queued during a loop turn and submitted together by the one
 *    io_uring_enter that also waits. Per message that is a fraction of a
 *    system call, where readiness needs a wait, a read and a write.
 *
 * Listening sockets accept by a multishot accept where the kernel has it
 * (src/net/tcp.c), and large sends may go out zero-copy (SEND_ZC, see
 * uring_stream.c); both are features probed here (tw__uring_features).
 *
 * The user_data of every SQE says what completed: bit 1 set, a tw__op;
 * otherwise a tw__io with its instance in bit 0 (stale polls are dropped);
 * 0, nothing to do (cancel and remove requests). The ring is created
 * disabled and enabled by the thread that first waits, so that thread alone
 * may submit (SINGLE_ISSUER) and task work runs only when it asks
 * (DEFER_TASKRUN, 6.1). Where DEFER_TASKRUN is missing, COOP_TASKRUN (5.19)
 * at least keeps completions from interrupting the thread: their task work
 * runs at the next io_uring_enter, which the loop makes anyway.
 *
 * TWIRL_URING_SEND_ZC=auto|always|never picks when stream sockets send
 * zero-copy: auto (the default) only to peers on other hosts, where it can
 * pay; always also on loopback (for tests and measurements); never. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/reactor_impl.h"
#include "core/uring.h"
#include "twirl/log.h"

enum {
    SQ_ENTRIES = 1024,
    CQ_ENTRIES = 8192,
    BUF_ENTRIES = 256,    /* power of two */
    BUF_BYTES = 32 * 1024 /* one receive's worth */
};

/* A poll registration: the CQE names the slot and the generation of the
 * arming, never the io itself, so an owner may free an io as soon as it
 * stopped it even though the cancelled poll's completion is still to come. */
typedef struct poll_slot {
    tw__io *io; /* NULL when free */
    uint32_t gen;
    int next_free;
} poll_slot;

typedef struct uring_backend {
    struct io_uring ring;
    int enabled;
    unsigned features; /* TW__URING_* */
    int send_zc;       /* enum tw__uring_zc */
    poll_slot *slots;
    int nslots, free_slot;
    /* provided buffers, made on first use */
    struct io_uring_buf_ring *br;
    char *bufs;
    int br_ready;
    struct buf_hold *holds; /* one per buffer */
    unsigned held;          /* buffers out of the ring */
} uring_backend;

/* Who still needs a received buffer (tw__uring_buf_hold). */
typedef struct buf_hold {
    uring_backend *b;
    unsigned short bid;
    unsigned short refs;
} buf_hold;

static inline uring_backend *ub(tw_reactor *r)
{
    return r->backend_data; /* src/core sees the reactor's struct */
}

int tw__uring_probe(void)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0)
        return rc; /* ENOSYS, EPERM (io_uring_disabled), ENOMEM */
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    static const int needed[] = { IORING_OP_POLL_ADD, IORING_OP_POLL_REMOVE, IORING_OP_RECV,
                                  IORING_OP_SEND, IORING_OP_ASYNC_CANCEL };
    rc = probe ? 0 : -ENOSYS;
    for (size_t i = 0; probe && i < sizeof needed / sizeof needed[0]; i++)
        if (!io_uring_opcode_supported(probe, needed[i]))
            rc = -ENOSYS;
    if (probe)
        io_uring_free_probe(probe);
    /* Multishot receive with a buffer ring (Linux 6.0) is what the transport
     * is built on: check it by registering a tiny ring. */
    if (rc == 0) {
        struct io_uring_buf_ring *br =
            mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        if (br == MAP_FAILED) {
            rc = -ENOMEM;
        } else {
            struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)br,
                                            .ring_entries = 8,
                                            .bgid = 7 };
            rc = io_uring_register_buf_ring(&ring, &reg, 0);
            if (rc == 0)
                io_uring_unregister_buf_ring(&ring, 7);
            munmap(br, 4096);
        }
    }
    if (rc == 0 && !(ring.features & IORING_FEAT_EXT_ARG))
        rc = -ENOSYS; /* waiting with a timeout needs it (5.11) */
    io_uring_queue_exit(&ring);
    return rc;
}

/* Setup flags, best first: a kernel that refuses a set (EINVAL) gets the
 * next. R_DISABLED (5.10) lets the running thread, not the creating one,
 * become the single issuer. */
static const unsigned setup_ladder[] = {
    IORING_SETUP_R_DISABLED | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, /* 6.1 */
    IORING_SETUP_R_DISABLED | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,  /* 6.0 */
    IORING_SETUP_R_DISABLED | IORING_SETUP_COOP_TASKRUN,                               /* 5.19 */
    0,
};

static int zc_mode_from_env(void)
{
    const char *v = getenv("TWIRL_URING_SEND_ZC");
    if (!v || !*v || strcmp(v, "auto") == 0)
        return TW__URING_ZC_AUTO;
    if (strcmp(v, "always") == 0)
        return TW__URING_ZC_ALWAYS;
    if (strcmp(v, "never") == 0)
        return TW__URING_ZC_NEVER;
    tw_log(TW_LOG_WARN, "reactor", "unknown TWIRL_URING_SEND_ZC=%s, using auto", v);
    return TW__URING_ZC_AUTO;
}

static int ur_init(tw_reactor *r)
{
    uring_backend *b = calloc(1, sizeof *b);
    if (!b)
        return TW_ENOMEM;
    int rc = -EINVAL;
    unsigned flags = 0;
    for (size_t i = 0; rc == -EINVAL && i < sizeof setup_ladder / sizeof setup_ladder[0]; i++) {
        struct io_uring_params p = { 0 };
        flags = setup_ladder[i];
        p.flags = IORING_SETUP_CQSIZE | flags;
        p.cq_entries = CQ_ENTRIES;
        rc = io_uring_queue_init_params(SQ_ENTRIES, &b->ring, &p);
    }
    if (rc < 0) {
        free(b);
        return rc;
    }
    b->enabled = !(flags & IORING_SETUP_R_DISABLED);
    /* The backend runs only where buffer rings work (tw__uring_probe), that
     * is Linux 5.19 or later, which also has multishot accept; should a
     * kernel still refuse it, the first accept says so (EINVAL) and the
     * port falls back to readiness (tcp.c). */
    b->features = TW__URING_ACCEPT_MULTI;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&b->ring);
    if (probe) {
        if (io_uring_opcode_supported(probe, IORING_OP_SEND_ZC))
            b->features |= TW__URING_SEND_ZC;
        io_uring_free_probe(probe);
    }
    b->send_zc = zc_mode_from_env();
    tw_log(TW_LOG_DEBUG, "reactor", "io_uring: setup flags %#x, send zc %s", flags,
           b->features & TW__URING_SEND_ZC ? "yes" : "no");
    b->free_slot = -1;
    tw__reactor_set_backend_data(r, b);
    return 0;
}

unsigned tw__uring_features(tw_reactor *r)
{
    return ub(r)->features;
}

void tw__uring_feature_off(tw_reactor *r, unsigned feature)
{
    ub(r)->features &= ~feature;
}

int tw__uring_send_zc_mode(tw_reactor *r)
{
    return ub(r)->send_zc;
}

void tw__uring_set_send_zc_mode(tw_reactor *r, int mode)
{
    ub(r)->send_zc = mode;
}

static void ur_fini(tw_reactor *r)
{
    uring_backend *b = ub(r);
    free(b->slots);
    free(b->holds);
    if (b->br_ready)
        io_uring_unregister_buf_ring(&b->ring, TW__URING_BUF_GROUP);
    io_uring_queue_exit(&b->ring);
    if (b->br)
        munmap(b->br, BUF_ENTRIES * sizeof(struct io_uring_buf));
    if (b->bufs)
        munmap(b->bufs, (size_t)BUF_ENTRIES * BUF_BYTES);
    free(b);
}

static int enable(uring_backend *b);

struct io_uring_sqe *tw__uring_sqe(tw_reactor *r)
{
    uring_backend *b = ub(r);
    struct io_uring_sqe *sqe;
    while ((sqe = io_uring_get_sqe(&b->ring)) == NULL) {
        /* The queue is full: hand it to the kernel now. A disabled ring
         * cannot take it; it is enabled by the thread that runs the loop,
         * which owns the ring anyway. */
        enable(b);
        io_uring_submit(&b->ring);
    }
    return sqe;
}

/* ------------------------------------------------------------ buffers */

static int bufs_ensure(uring_backend *b)
{
    if (b->br_ready)
        return 0;
    size_t ring_bytes = BUF_ENTRIES * sizeof(struct io_uring_buf);
    b->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (b->br == MAP_FAILED) {
        b->br = NULL;
        return TW_ENOMEM;
    }
    /* Untouched pages cost nothing: memory follows the bytes in flight. */
    b->bufs = mmap(NULL, (size_t)BUF_ENTRIES * BUF_BYTES, PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (b->bufs == MAP_FAILED) {
        b->bufs = NULL;
        return TW_ENOMEM;
    }
    b->holds = calloc(BUF_ENTRIES, sizeof *b->holds);
    if (!b->holds)
        return TW_ENOMEM;
    for (unsigned i = 0; i < BUF_ENTRIES; i++)
        b->holds[i] = (buf_hold){ b, (unsigned short)i, 0 };
    io_uring_buf_ring_init(b->br);
    struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)b->br,
                                    .ring_entries = BUF_ENTRIES,
                                    .bgid = TW__URING_BUF_GROUP };
    int rc = io_uring_register_buf_ring(&b->ring, &reg, 0);
    if (rc < 0)
        return rc;
    int mask = io_uring_buf_ring_mask(BUF_ENTRIES);
    for (unsigned i = 0; i < BUF_ENTRIES; i++)
        io_uring_buf_ring_add(b->br, b->bufs + (size_t)i * BUF_BYTES, BUF_BYTES, (unsigned short)i,
                              mask, (int)i);
    io_uring_buf_ring_advance(b->br, BUF_ENTRIES);
    b->br_ready = 1;
    return 0;
}

void *tw__uring_buf(tw_reactor *r, unsigned bid)
{
    return ub(r)->bufs + (size_t)bid * BUF_BYTES;
}

size_t tw__uring_buf_size(tw_reactor *r)
{
    return BUF_BYTES;
}

void *tw__uring_buf_hold(tw_reactor *r, unsigned bid)
{
    uring_backend *b = ub(r);
    buf_hold *h = &b->holds[bid];
    if (h->refs++ == 0)
        b->held++;
    return h;
}

void tw__uring_buf_unref(void *held)
{
    buf_hold *h = held;
    if (--h->refs > 0)
        return;
    uring_backend *b = h->b;
    b->held--;
    io_uring_buf_ring_add(b->br, b->bufs + (size_t)h->bid * BUF_BYTES, BUF_BYTES, h->bid,
                          io_uring_buf_ring_mask(BUF_ENTRIES), 0);
    io_uring_buf_ring_advance(b->br, 1);
}

void *tw__uring_buf_lend(tw_reactor *r, const void *data, size_t len)
{
    uring_backend *b = ub(r);
    uintptr_t p = (uintptr_t)data, base = (uintptr_t)b->bufs;
    if (!b->bufs || p < base || p - base >= (size_t)BUF_ENTRIES * BUF_BYTES)
        return NULL;
    size_t off = p - base;
    buf_hold *h = &b->holds[off / BUF_BYTES];
    /* Half the ring stays for receiving: a slow peer's queue must not
     * starve every other connection of buffers. */
    if (h->refs == 0 || off % BUF_BYTES + len > BUF_BYTES || b->held > BUF_ENTRIES / 2)
        return NULL;
    h->refs++;
    return h;
}

int tw__uring_bufs_ready(tw_reactor *r)
{
    return bufs_ensure(ub(r));
}

/* io_uring_enable_rings is declared by liburing 2.3's header but missing
 * from its library: ask the kernel directly. */
static int enable(uring_backend *b)
{
    if (b->enabled)
        return 0;
    if (syscall(__NR_io_uring_register, b->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
        return -errno;
    b->enabled = 1;
    return 0;
}

/* Submits and runs the ring's task work, so cancellations take effect now:
 * a cancelled request holds a reference to its file until then, and an fd
 * closed before that would stay open in the kernel (a listening socket
 * would even queue connections it will never accept). */
int tw__uring_submit_now(tw_reactor *r)
{
    uring_backend *b = ub(r);
    int rc = enable(b);
    return rc < 0 ? rc : io_uring_submit_and_get_events(&b->ring);
}

/* ------------------------------------------------------------ readiness */

static uint64_t poll_tag(const uring_backend *b, const tw__io *io)
{
    int i = io->poll_index;
    return ((uint64_t)b->slots[i].gen << 32) | ((uint64_t)(unsigned)i << 2);
}

static int slot_take(uring_backend *b, tw__io *io)
{
    if (b->free_slot < 0) {
        int n = b->nslots ? b->nslots * 2 : 64;
        poll_slot *slots = realloc(b->slots, (size_t)n * sizeof *slots);
        if (!slots)
            return TW_ENOMEM;
        for (int i = n; i-- > b->nslots;)
            slots[i] =
                (poll_slot){ NULL, 1,
                             i + 1 < n ? i + 1 : -1 }; /* gen 0 never: ud 0 means "nothing" */
        slots[n - 1].next_free = -1;
        b->free_slot = b->nslots;
        b->slots = slots;
        b->nslots = n;
    }
    int i = b->free_slot;
    b->free_slot = b->slots[i].next_free;
    b->slots[i].io = io;
    io->poll_index = i;
    return 0;
}

static void slot_give(uring_backend *b, tw__io *io)
{
    int i = io->poll_index;
    b->slots[i].io = NULL;
    if (++b->slots[i].gen == 0)
        b->slots[i].gen = 1;
    b->slots[i].next_free = b->free_slot;
    b->free_slot = i;
    io->poll_index = -1;
}

static unsigned poll_mask(unsigned mask)
{
    return (mask & TW_READABLE ? POLLIN | POLLRDHUP : 0u) | (mask & TW_WRITABLE ? POLLOUT : 0u);
}

/* Every arming gets a fresh generation: a completion of an earlier arming
 * (removed, or fired and not yet seen) can never pass for the current one,
 * so at most one poll per registration is ever live. */
static void arm(tw_reactor *r, tw__io *io, unsigned mask)
{
    poll_slot *slot = &ub(r)->slots[io->poll_index];
    if (++slot->gen == 0)
        slot->gen = 1; /* user_data 0 means "nothing" */
    struct io_uring_sqe *sqe = tw__uring_sqe(r);
    io_uring_prep_poll_add(sqe, io->fd, poll_mask(mask));
    io_uring_sqe_set_data64(sqe, poll_tag(ub(r), io));
    io->registered = 1;
}

static int ur_watch(tw_reactor *r, tw__io *io, unsigned mask)
{
    uring_backend *b = ub(r);
    if (!mask) {
        if (io->poll_index >= 0) {
            if (io->registered) {
                struct io_uring_sqe *sqe = tw__uring_sqe(r);
                io_uring_prep_poll_remove(sqe, poll_tag(b, io));
                io_uring_sqe_set_data64(sqe, 0);
            }
            slot_give(b, io);
        }
        io->registered = 0;
        return 0;
    }
    if (io->poll_index < 0 && slot_take(b, io) < 0)
        return TW_ENOMEM;
    if (io->registered) {
        /* A new mask: remove the armed poll and add a fresh one, which
         * looks at the fd's state now. (An in-place POLL_UPDATE does not
         * always re-check readiness, and a pipe drained in between would
         * never report writable.) The removed poll's -ECANCELED is
         * ignored. */
        struct io_uring_sqe *sqe = tw__uring_sqe(r);
        io_uring_prep_poll_remove(sqe, poll_tag(b, io));
        io_uring_sqe_set_data64(sqe, 0);
    }
    arm(r, io, mask);
    return 0;
}

/* The owner is about to close the fd, as a rule: make the removal real
 * first (see tw__uring_submit_now). */
static void ur_unwatch(tw_reactor *r, tw__io *io)
{
    int armed = io->registered;
    ur_watch(r, io, 0);
    if (armed)
        tw__uring_submit_now(r);
}

static void poll_done(tw_reactor *r, uint64_t ud, int32_t res)
{
    uring_backend *b = ub(r);
    int i = (int)((ud & 0xffffffffu) >> 2);
    uint32_t gen = (uint32_t)(ud >> 32);
    if (i >= b->nslots || b->slots[i].gen != gen || !b->slots[i].io)
        return; /* stopped since: the poll was removed, or is being */
    tw__io *io = b->slots[i].io;
    if (res == -ECANCELED || !io->registered)
        return;         /* replaced by an update that raced it */
    io->registered = 0; /* one-shot: it fired */
    unsigned events = 0;
    if (res < 0)
        events = TW_ERROR | TW_READABLE | TW_WRITABLE;
    else {
        if (res & (POLLIN | POLLPRI | POLLRDHUP))
            events |= TW_READABLE;
        if (res & POLLOUT)
            events |= TW_WRITABLE;
        if (res & (POLLHUP | POLLRDHUP))
            events |= TW_HANGUP;
        if (res & (POLLERR | POLLNVAL))
            events |= TW_ERROR;
    }
    tw__io_ready(r, tw__io_tag(io), events);
    /* Level-triggered: ask again while the owner still wants events. The
     * slot says whether the io is still registered (and so still alive): a
     * stopped io may already be freed, and is not touched. */
    if (b->slots[i].gen == gen && b->slots[i].io == io && io->mask && !io->registered)
        arm(r, io, io->mask);
}

/* ------------------------------------------------------------ waiting */

/* Hands the prepared SQEs to the kernel and waits for a completion (or
 * ts), in one io_uring_enter, as io_uring_submit_and_wait_timeout does;
 * done here because liburing's version loops around the call and peeks
 * the ring on both sides of it, which per turn cost more instructions than
 * the rest of the turn. Completions already waiting are not waited for. */
static int submit_and_wait(uring_backend *b, const struct __kernel_timespec *ts)
{
    struct io_uring_sq *sq = &b->ring.sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail); /* the SQEs before the tail */
    }
    unsigned to_submit = tail - io_uring_smp_load_acquire(sq->khead);
    struct io_uring_getevents_arg arg = { .sigmask_sz = _NSIG / 8, .ts = (uint64_t)(uintptr_t)ts };
    unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
    if (*b->ring.cq.khead != io_uring_smp_load_acquire(b->ring.cq.ktail)) {
        if (!to_submit)
            return 0;
        flags = 0; /* only submit */
    }
    long rc = syscall(__NR_io_uring_enter, b->ring.ring_fd, to_submit, 1, flags,
                      flags ? &arg : NULL, flags ? sizeof arg : 0);
    return rc < 0 ? -errno : (int)rc;
}

static int ur_wait(tw_reactor *r, int64_t timeout_ns)
{
    uring_backend *b = ub(r);
    int erc = enable(b);
    if (erc < 0)
        return erc;
    struct __kernel_timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    struct io_uring_cqe *cqe;
    int rc = submit_and_wait(b, tsp);
    tw_reactor_update_time(r); /* before any callback */
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
        return rc;
    int n = 0;
    /* Mark each CQE seen before handling it: a handler may submit, and a
     * submission may post new completions. Bounded per call so one busy
     * turn cannot starve timers. The ring is read directly rather than
     * with io_uring_peek_cqe, whose last, empty peek calls into liburing
     * (and, when the kernel holds overflowed completions, into the kernel):
     * the next wait flushes those anyway. */
    struct io_uring_cq *cq = &b->ring.cq;
    while (n < CQ_ENTRIES) {
        unsigned head = *cq->khead;
        if (head == io_uring_smp_load_acquire(cq->ktail))
            break;
        cqe = &cq->cqes[head & cq->ring_mask];
        uint64_t ud = cqe->user_data;
        int32_t res = cqe->res;
        uint32_t cflags = cqe->flags;
        io_uring_smp_store_release(cq->khead, head + 1);
        n++;
        if (ud & 2) {
            uint32_t flags = (cflags & IORING_CQE_F_MORE) ? TW__OP_MORE : 0;
            if (cflags & IORING_CQE_F_NOTIF)
                flags |= TW__OP_NOTIF;
            if (cflags & IORING_CQE_F_BUFFER)
                flags |= TW__OP_BUFFER | (cflags & 0xffff0000u);
            if (ud & 4)
                flags |= TW__OP_SECOND;
            tw__op *op = (tw__op *)(uintptr_t)(ud & ~(uint64_t)7);
            op->cb(r, op, res, flags);
        } else if (ud) {
            poll_done(r, ud, res);
        }
    }
    return n;
}

const tw__backend_ops tw__backend_uring = {
    .name = "uring",
    .completions = 1,
    .init = ur_init,
    .fini = ur_fini,
    .watch = ur_watch,
    .unwatch = ur_unwatch,
    .wait = ur_wait,
};
