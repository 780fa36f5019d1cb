/* static.c — static files (Twisted's static.File): a leaf resource that
 * serves a directory tree (or one file) with sendfile, byte ranges,
 * conditional requests, MIME types, index files and listings.
 *
 * Safety: the path is built from the decoded postpath segments, each of
 * which must be a plain name (no "." or "..", no '/', '\\', NUL or control
 * bytes, no empty inner segment, no leading '.' unless show_hidden), and
 * opened relative to the root directory's descriptor with openat2's
 * RESOLVE_BENEATH, so that no symbolic link leads outside either. Kernels
 * without openat2 get openat plus a check of where the descriptor landed.
 *
 * Speed: an open-file cache (as nginx's open_file_cache) keeps, per path,
 * the descriptor, its metadata, ETag and Last-Modified text, and the bytes
 * of small files, for cache_valid seconds; a hit costs no system call at
 * all for a small file and one sendfile for a large one. The cache is
 * shared by every reactor serving the resource (a mutex guards it). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "twirl/http_util.h"
#include "web/web_internal.h"

enum { SMALL_FILE = 16 * 1024, DEFAULT_ENTRIES = 64 };

typedef struct fentry {
    unsigned refs; /* atomic: the cache's, and each request's using it */
    char *key;
    size_t klen;
    uint64_t hash;
    int fd;
    struct stat st;
    int64_t valid_until;
    uint64_t last_used;
    const char *ctype;
    size_t ctype_len;
    char etag[64];
    size_t etag_len;
    char lastmod[40];
    size_t lastmod_len;
    char *content; /* small files: the bytes */
} fentry;

typedef struct static_res {
    tw_resource base;
    int root_fd;     /* the directory (O_PATH) */
    char *single;    /* one-file mode: the file's name in root_fd's directory */
    char *root_real; /* realpath of the root, for the fallback check */
    bool show_hidden, no_listing;
    char *default_type;
    const char *const *index;
    int64_t valid_ns;
    pthread_mutex_t lock;
    fentry **cache;
    size_t ncache, cache_cap;
    uint64_t tick;
} static_res;

static const char *const default_index[] = { "index.html", NULL };

void tw_static_options_init(tw_static_options *o)
{
    memset(o, 0, sizeof *o);
    o->index_files = default_index;
    o->default_type = "application/octet-stream";
    o->cache_valid = 1.0;
    o->cache_entries = DEFAULT_ENTRIES;
}

/* ------------------------------------------------------------ opening safely */

static int have_openat2 = 1; /* cleared (racily, harmlessly) on ENOSYS */

static int open_beneath(static_res *sr, const char *rel, int flags)
{
    flags |= O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    if (sr->single) { /* one file named by the operator: no client input */
        int fd = openat(sr->root_fd, rel, flags);
        return fd < 0 ? -errno : fd;
    }
    if (__atomic_load_n(&have_openat2, __ATOMIC_RELAXED)) {
        struct open_how how = {
            .flags = (uint64_t)flags,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, sr->root_fd, rel, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS)
            return -errno;
        __atomic_store_n(&have_openat2, 0, __ATOMIC_RELAXED);
    }
    int fd = openat(sr->root_fd, rel, flags);
    if (fd < 0)
        return -errno;
    /* Where did it land? It must be the root or beneath it. */
    char proc[64], real[PATH_MAX];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, real, sizeof real - 1);
    size_t rl = strlen(sr->root_real);
    if (n < 0 || (size_t)n < rl || memcmp(real, sr->root_real, rl) != 0 ||
        ((size_t)n > rl && real[rl] != '/' && rl > 1)) {
        close(fd);
        return -EXDEV;
    }
    return fd;
}

/* ------------------------------------------------------------ dates */

static const char wdays[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static size_t http_date(time_t t, char *out, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    return (size_t)snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday],
                            tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                            tm.tm_sec);
}

static int two(const char *p)
{
    return (p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9')
               ? (p[0] - '0') * 10 + p[1] - '0'
               : -1;
}

/* IMF-fixdate, RFC 850 and asctime (RFC 9110 §5.6.7). -1 when unreadable. */
static int64_t parse_http_date(const char *s, size_t n)
{
    char buf[64];
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    struct tm tm = { 0 };
    if (n == 29 && buf[3] == ',' && buf[4] == ' ' && memcmp(buf + 25, " GMT", 4) == 0) {
        int mon = -1;
        for (int i = 0; i < 12; i++)
            if (memcmp(buf + 8, months[i], 3) == 0)
                mon = i;
        int day = two(buf + 5), y1 = two(buf + 12), y2 = two(buf + 14), h = two(buf + 17),
            mi = two(buf + 20), se = two(buf + 23);
        if (mon < 0 || day < 1 || y1 < 0 || y2 < 0 || h < 0 || mi < 0 || se < 0 || h > 23 ||
            mi > 59 || se > 60)
            return -1;
        tm.tm_mday = day;
        tm.tm_mon = mon;
        tm.tm_year = y1 * 100 + y2 - 1900;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = se;
        return (int64_t)timegm(&tm);
    }
    const char *end = strptime(buf, "%A, %d-%b-%y %H:%M:%S GMT", &tm);
    if (!end || *end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(buf, "%a %b %e %H:%M:%S %Y", &tm);
    }
    if (!end || *end)
        return -1;
    return (int64_t)timegm(&tm);
}

/* ------------------------------------------------------------ the cache */

static uint64_t hash_key(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void fentry_unref(void *arg)
{
    fentry *e = arg;
    if (__atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    close(e->fd);
    free(e->content);
    free(e->key);
    free(e);
}

static int64_t now_ns(tw_request *req)
{
    return tw_reactor_now_ns(tw_site_reactor(tw_request_site(req)));
}

/* Opens rel (a regular file) through the cache. Returns 0 and an entry the
 * caller must unref, -EISDIR for a directory, or -errno. */
static int lookup(static_res *sr, tw_request *req, const char *rel, size_t rlen, fentry **out)
{
    uint64_t h = hash_key(rel, rlen);
    int64_t now = now_ns(req);
    if (sr->valid_ns > 0) {
        pthread_mutex_lock(&sr->lock);
        for (size_t i = 0; i < sr->ncache; i++) {
            fentry *e = sr->cache[i];
            if (e->hash != h || e->klen != rlen || memcmp(e->key, rel, rlen) != 0)
                continue;
            if (now < e->valid_until) {
                __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
                e->last_used = ++sr->tick;
                pthread_mutex_unlock(&sr->lock);
                *out = e;
                return 0;
            }
            sr->cache[i] = sr->cache[--sr->ncache]; /* stale: look again */
            fentry_unref(e);
            break;
        }
        pthread_mutex_unlock(&sr->lock);
    }
    char *key = malloc(rlen + 1);
    if (!key)
        return TW_ENOMEM;
    memcpy(key, rel, rlen);
    key[rlen] = 0;
    int fd = open_beneath(sr, rlen ? key : ".", O_RDONLY);
    if (fd < 0) {
        free(key);
        return fd;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int err = S_ISDIR(st.st_mode) ? -EISDIR : -ENOENT;
        close(fd);
        free(key);
        return err;
    }
    fentry *e = calloc(1, sizeof *e);
    if (!e) {
        close(fd);
        free(key);
        return TW_ENOMEM;
    }
    e->refs = 1;
    e->key = key;
    e->klen = rlen;
    e->hash = h;
    e->fd = fd;
    e->st = st;
    e->valid_until = now + sr->valid_ns;
    e->etag_len = (size_t)snprintf(
        e->etag, sizeof e->etag, "\"%llx.%lx-%llx\"", (unsigned long long)st.st_mtim.tv_sec,
        (unsigned long)st.st_mtim.tv_nsec, (unsigned long long)st.st_size);
    e->lastmod_len = http_date(st.st_mtim.tv_sec, e->lastmod, sizeof e->lastmod);
    const char *base = strrchr(key, '/');
    base = base ? base + 1 : key;
    e->ctype = tw_mime_type(base, strlen(base));
    if (!e->ctype)
        e->ctype = sr->default_type;
    e->ctype_len = strlen(e->ctype);
    if (st.st_size <= SMALL_FILE && st.st_size > 0 && (e->content = malloc((size_t)st.st_size))) {
        ssize_t n = pread(fd, e->content, (size_t)st.st_size, 0);
        if (n != st.st_size) {
            free(e->content);
            e->content = NULL;
        }
    }
    if (sr->valid_ns > 0) {
        pthread_mutex_lock(&sr->lock);
        if (sr->ncache == sr->cache_cap) {
            size_t victim = 0;
            for (size_t i = 1; i < sr->ncache; i++)
                if (sr->cache[i]->last_used < sr->cache[victim]->last_used)
                    victim = i;
            fentry_unref(sr->cache[victim]);
            sr->cache[victim] = sr->cache[--sr->ncache];
        }
        e->refs = 2;
        e->last_used = ++sr->tick;
        sr->cache[sr->ncache++] = e;
        pthread_mutex_unlock(&sr->lock);
    }
    *out = e;
    return 0;
}

/* ------------------------------------------------------------ conditions, ranges */

static bool etag_in_list(const char *v, size_t n, const char *etag, size_t elen, bool weak_ok)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        const char *t = v + start;
        size_t tl = end - start;
        if (tl == 1 && t[0] == '*')
            return true;
        if (tl > 2 && t[0] == 'W' && t[1] == '/') {
            if (!weak_ok)
                continue;
            t += 2;
            tl -= 2;
        }
        if (tl == elen && memcmp(t, etag, elen) == 0)
            return true;
    }
    return false;
}

static bool parse_num(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t x = 0;
    if (s == end || *s < '0' || *s > '9')
        return false;
    while (s < end && *s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
        s++;
    }
    *p = s;
    *out = x;
    return true;
}

static void put_validators(tw_request *req, fentry *e)
{
    tw__request_header_static(req, "ETag", 4, e->etag, e->etag_len);
    tw__request_header_static(req, "Last-Modified", 13, e->lastmod, e->lastmod_len);
}

enum { RANGE_NONE = 0, RANGE_OK, RANGE_BAD };

/* Several ranges are answered as multipart/byteranges, built in memory:
 * up to this many ranges, of this many bytes in all. Beyond either the
 * whole file is sent by sendfile (RFC 9110 lets a server ignore a Range),
 * so a crowd of such requests cannot make the server hold whole files. */
enum { RANGES_MAX = 16, MULTIPART_MAX = 256 << 10 };

typedef struct byte_range {
    uint64_t a, b; /* first and last byte */
} byte_range;

/* One range-spec in [p, end): RANGE_OK with *r, RANGE_BAD when it cannot
 * be satisfied, RANGE_NONE when it is not valid. */
static int parse_spec(const char *p, const char *end, uint64_t size, byte_range *r)
{
    uint64_t x, y;
    if (p < end && *p == '-') {
        p++;
        if (!parse_num(&p, end, &y) || p != end)
            return RANGE_NONE;
        if (y == 0 || size == 0)
            return RANGE_BAD;
        *r = (byte_range){ y >= size ? 0 : size - y, size - 1 };
        return RANGE_OK;
    }
    if (!parse_num(&p, end, &x) || p == end || *p != '-')
        return RANGE_NONE;
    p++;
    if (p == end) {
        if (x >= size)
            return RANGE_BAD;
        *r = (byte_range){ x, size - 1 };
        return RANGE_OK;
    }
    if (!parse_num(&p, end, &y) || p != end || y < x)
        return RANGE_NONE;
    if (x >= size)
        return RANGE_BAD;
    *r = (byte_range){ x, y >= size ? size - 1 : y };
    return RANGE_OK;
}

/* A Range header (RFC 9110 §14.1.2): the satisfiable ranges in out[],
 * their number in *n. RANGE_BAD when none can be satisfied; RANGE_NONE —
 * the whole file is sent — for other units, bad syntax, more than
 * RANGES_MAX ranges, or ranges that add up to more than the file (a
 * request for the same bytes many times over). */
static int parse_range(const char *v, size_t len, uint64_t size, byte_range *out, int *n)
{
    const char *p = v, *end = v + len;
    if (len < 6 || !tw_http_token_eq(v, 5, "bytes") || v[5] != '=')
        return RANGE_NONE;
    p += 6;
    int specs = 0;
    uint64_t total = 0;
    *n = 0;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *s = p, *e = comma ? comma : end;
        p = comma ? comma + 1 : end;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (s == e)
            continue; /* an empty list element */
        if (++specs > RANGES_MAX)
            return RANGE_NONE;
        byte_range r;
        int rc = parse_spec(s, e, size, &r);
        if (rc == RANGE_NONE)
            return RANGE_NONE;
        if (rc == RANGE_OK) {
            out[(*n)++] = r;
            total += r.b - r.a + 1;
        }
    }
    if (specs == 0)
        return RANGE_NONE;
    if (*n == 0)
        return RANGE_BAD;
    return total > size ? RANGE_NONE : RANGE_OK;
}

/* 206 multipart/byteranges for n > 1 ranges, built in memory (the caller
 * keeps their bytes under MULTIPART_MAX). Consumes e. */
static int serve_parts(tw_request *req, fentry *e, const byte_range *r, int n)
{
    uint64_t size = (uint64_t)e->st.st_size;
    /* The boundary follows from the file's validator, so an answer depends
     * only on the request and the file (FNV-1a of the ETag). */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < e->etag_len; i++)
        h = (h ^ (unsigned char)e->etag[i]) * 0x100000001b3ull;
    char boundary[24];
    snprintf(boundary, sizeof boundary, "twirl%016llx", (unsigned long long)h);
    /* "\r\n--B\r\nContent-Type: T\r\nContent-Range: bytes a-b/size\r\n\r\n" */
    size_t head_max = 2 + 2 + 21 + 2 + 14 + e->ctype_len + 2 + 21 + 3 * 20 + 2 + 4 + 2;
    size_t total = 2 + 2 + 21 + 4; /* "\r\n--B--\r\n" */
    for (int i = 0; i < n; i++)
        total += head_max + (size_t)(r[i].b - r[i].a + 1);
    char *body = malloc(total);
    if (!body) {
        fentry_unref(e);
        return tw_request_respond_error(req, 500, "Out of memory.");
    }
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(body + len, total - len,
                                "\r\n--%s\r\nContent-Type: %.*s\r\n"
                                "Content-Range: bytes %llu-%llu/%llu\r\n\r\n",
                                boundary, (int)e->ctype_len, e->ctype, (unsigned long long)r[i].a,
                                (unsigned long long)r[i].b, (unsigned long long)size);
        size_t part = (size_t)(r[i].b - r[i].a + 1);
        if (e->content) {
            memcpy(body + len, e->content + r[i].a, part);
        } else {
            for (size_t got = 0; got < part;) {
                ssize_t k = pread(e->fd, body + len + got, part - got, (off_t)(r[i].a + got));
                if (k <= 0) {
                    if (k < 0 && errno == EINTR)
                        continue;
                    free(body);
                    fentry_unref(e);
                    return tw_request_respond_error(req, 500, "The file could not be read.");
                }
                got += (size_t)k;
            }
        }
        len += part;
    }
    len += (size_t)snprintf(body + len, total - len, "\r\n--%s--\r\n", boundary);
    char *ctype = tw__arena_alloc(req, 64);
    if (ctype) {
        int k = snprintf(ctype, 64, "multipart/byteranges; boundary=%s", boundary);
        tw__request_header_static(req, "Content-Type", 12, ctype, (size_t)k);
    }
    put_validators(req, e);
    tw__request_header_static(req, "Accept-Ranges", 13, "bytes", 5);
    tw_request_set_status(req, 206);
    tw_request_set_content_length(req, len);
    tw_request_write(req, body, len);
    tw_request_finish(req);
    free(body);
    fentry_unref(e);
    return 0;
}

static int serve(static_res *sr, tw_request *req, fentry *e)
{
    uint64_t size = (uint64_t)e->st.st_size;
    tw_http_slice v;
    bool not_modified = false;
    if (tw_request_header(req, "If-None-Match", &v)) {
        not_modified = etag_in_list(v.ptr, v.len, e->etag, e->etag_len, true);
    } else if (tw_request_header(req, "If-Modified-Since", &v)) {
        int64_t ims = parse_http_date(v.ptr, v.len);
        not_modified = ims >= 0 && (int64_t)e->st.st_mtim.tv_sec <= ims;
    }
    if (not_modified) {
        put_validators(req, e);
        tw_request_set_status(req, 304);
        tw_request_finish(req);
        fentry_unref(e);
        return 0;
    }
    uint64_t a = 0, b = size ? size - 1 : 0;
    byte_range ranges[RANGES_MAX];
    int nranges = 0;
    int range = RANGE_NONE;
    if (tw_request_header(req, "Range", &v)) {
        range = parse_range(v.ptr, v.len, size, ranges, &nranges);
        tw_http_slice ir;
        if (range != RANGE_NONE && tw_request_header(req, "If-Range", &ir)) {
            bool same = ir.len && ir.ptr[0] == '"'
                            ? (ir.len == e->etag_len && memcmp(ir.ptr, e->etag, ir.len) == 0)
                            : parse_http_date(ir.ptr, ir.len) == (int64_t)e->st.st_mtim.tv_sec;
            if (!same)
                range = RANGE_NONE;
        }
        if (range == RANGE_OK && nranges > 1) {
            uint64_t bytes = 0;
            for (int i = 0; i < nranges; i++)
                bytes += ranges[i].b - ranges[i].a + 1;
            if (bytes <= MULTIPART_MAX)
                return serve_parts(req, e, ranges, nranges);
            range = RANGE_NONE; /* too much to build: the whole file */
        }
        if (range == RANGE_OK) {
            a = ranges[0].a;
            b = ranges[0].b;
        }
    }
    tw__request_header_static(req, "Content-Type", 12, e->ctype, e->ctype_len);
    put_validators(req, e);
    tw__request_header_static(req, "Accept-Ranges", 13, "bytes", 5);
    if (range == RANGE_BAD) {
        char *cr = tw__arena_alloc(req, 40);
        int n = cr ? snprintf(cr, 40, "bytes */%llu", (unsigned long long)size) : 0;
        if (cr)
            tw__request_header_static(req, "Content-Range", 13, cr, (size_t)n);
        tw_request_respond(req, 416, NULL, NULL, 0);
        fentry_unref(e);
        return 0;
    }
    if (range == RANGE_OK) {
        char *cr = tw__arena_alloc(req, 64);
        if (cr) {
            int n = snprintf(cr, 64, "bytes %llu-%llu/%llu", (unsigned long long)a,
                             (unsigned long long)b, (unsigned long long)size);
            tw__request_header_static(req, "Content-Range", 13, cr, (size_t)n);
        }
        tw_request_set_status(req, 206);
    }
    uint64_t len = size ? b - a + 1 : 0;
    if (e->content || len == 0) {
        tw_request_set_content_length(req, len);
        if (len)
            tw_request_write(req, e->content + a, (size_t)len);
        tw_request_finish(req);
        fentry_unref(e);
        return 0;
    }
    int rc = tw__request_send_file_ex(req, e->fd, a, len, fentry_unref, e);
    if (rc < 0 && (tw_request_head_sent(req) == false))
        return tw_request_respond_error(req, 500, "The file could not be read.");
    return 0;
}

/* ------------------------------------------------------------ listings */

typedef struct dent {
    char *name;
    bool dir;
} dent;

static int cmp_dent(const void *x, const void *y)
{
    return strcmp(((const dent *)x)->name, ((const dent *)y)->name);
}

static int listing(static_res *sr, tw_request *req, int dfd)
{
    int fd2 = dup(dfd);
    DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
    if (!d) {
        if (fd2 >= 0)
            close(fd2);
        return tw_request_respond_error(req, 500, "The directory could not be read.");
    }
    size_t n = 0, cap = 64;
    dent *v = malloc(cap * sizeof *v);
    struct dirent *de;
    while (v && (de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
            continue;
        if (nm[0] == '.' && !sr->show_hidden)
            continue;
        if (n == cap) {
            dent *nv = realloc(v, cap * 2 * sizeof *v);
            if (!nv)
                break;
            v = nv;
            cap *= 2;
        }
        bool dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN || de->d_type == DT_LNK) {
            struct stat st;
            dir = fstatat(dirfd(d), nm, &st, 0) == 0 && S_ISDIR(st.st_mode);
        }
        v[n].name = tw__arena_strdup(req, nm, strlen(nm));
        v[n].dir = dir;
        if (v[n].name)
            n++;
    }
    closedir(d);
    if (!v)
        return tw_request_respond_error(req, 500, "Out of memory.");
    qsort(v, n, sizeof *v, cmp_dent);
    tw_http_slice path = tw_request_path(req);
    size_t plen;
    char *ptitle = tw__html_escape(req, path.ptr, path.len, &plen);
    size_t need = 256 + 2 * plen;
    for (size_t i = 0; i < n; i++)
        need += 40 + 3 * strlen(v[i].name) * 2 + 8;
    char *body = tw__arena_alloc(req, need);
    if (!body || !ptitle) {
        free(v);
        return tw_request_respond_error(req, 500, "Out of memory.");
    }
    char *p = body;
    p += sprintf(p,
                 "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\">"
                 "<title>Directory listing for %s</title></head>\n<body>\n"
                 "<h1>Directory listing for %s</h1>\n<ul>\n",
                 ptitle, ptitle);
    static const char hx[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        const unsigned char *nm = (const unsigned char *)v[i].name;
        p += sprintf(p, "<li><a href=\"");
        for (const unsigned char *q = nm; *q; q++) {
            unsigned char c = *q;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '.' || c == '_' || c == '~') {
                *p++ = (char)c;
            } else {
                *p++ = '%';
                *p++ = hx[c >> 4];
                *p++ = hx[c & 15];
            }
        }
        if (v[i].dir)
            *p++ = '/';
        p += sprintf(p, "\">");
        for (const unsigned char *q = nm; *q; q++) {
            unsigned char c = *q;
            if (c == '<')
                p += sprintf(p, "&lt;");
            else if (c == '>')
                p += sprintf(p, "&gt;");
            else if (c == '&')
                p += sprintf(p, "&amp;");
            else if (c == '"')
                p += sprintf(p, "&quot;");
            else if (c == '\'')
                p += sprintf(p, "&#x27;");
            else if (c < 0x20 || c == 0x7f)
                *p++ = '?';
            else
                *p++ = (char)c;
        }
        if (v[i].dir)
            *p++ = '/';
        p += sprintf(p, "</a></li>\n");
    }
    p += sprintf(p, "</ul>\n</body>\n</html>\n");
    free(v);
    return tw_request_respond(req, 200, "text/html; charset=utf-8", body, (size_t)(p - body));
}

/* ------------------------------------------------------------ rendering */

/* A segment a client may name: not "." or "..", no separators or control
 * bytes, and not hidden unless allowed. */
static bool good_segment(const static_res *sr, tw_http_slice s)
{
    if (s.len == 0)
        return false;
    if (s.ptr[0] == '.') {
        if (!sr->show_hidden || s.len == 1 || (s.len == 2 && s.ptr[1] == '.'))
            return false;
    }
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
            return false;
    }
    return true;
}

static int not_found(tw_request *req)
{
    return tw_request_respond_error(req, 404, "File not found.");
}

static int redirect_to_dir(tw_request *req)
{
    tw_http_slice path = tw_request_path(req), q = tw_request_query(req);
    size_t cap = path.len + q.len + 3;
    char *loc = tw__arena_alloc(req, cap);
    if (!loc)
        return tw_request_respond_error(req, 500, "Out of memory.");
    int n = snprintf(loc, cap, "%.*s/%s%.*s", (int)path.len, path.ptr, q.ptr ? "?" : "", (int)q.len,
                     q.ptr ? q.ptr : "");
    (void)n;
    return tw_request_redirect(req, 301, loc);
}

static int st_get(tw_resource *r, tw_request *req)
{
    static_res *sr = (static_res *)r;
    size_t np = tw_request_postpath_count(req);
    fentry *e;
    int rc;
    if (sr->single) {
        if (np > 1 || (np == 1 && tw_request_postpath(req, 0).len != 0))
            return not_found(req);
        rc = lookup(sr, req, sr->single, strlen(sr->single), &e);
        return rc == 0 ? serve(sr, req, e) : not_found(req);
    }
    /* Join the segments into a relative path; the last may be empty (a
     * directory asked with its trailing slash). */
    bool trailing = np == 0 || tw_request_postpath(req, np - 1).len == 0;
    size_t nseg = trailing && np ? np - 1 : np;
    size_t len = 0;
    for (size_t i = 0; i < nseg; i++) {
        tw_http_slice s = tw_request_postpath(req, i);
        if (!good_segment(sr, s))
            return not_found(req);
        len += s.len + 1;
    }
    size_t longest_index = 0;
    for (const char *const *ix = sr->index; ix && *ix; ix++)
        if (strlen(*ix) > longest_index)
            longest_index = strlen(*ix);
    char *rel = tw__arena_alloc(req, len + longest_index + 2);
    if (!rel)
        return tw_request_respond_error(req, 500, "Out of memory.");
    size_t k = 0;
    for (size_t i = 0; i < nseg; i++) {
        tw_http_slice s = tw_request_postpath(req, i);
        if (i)
            rel[k++] = '/';
        memcpy(rel + k, s.ptr, s.len);
        k += s.len;
    }
    rel[k] = 0;
    if (!trailing) {
        rc = lookup(sr, req, rel, k, &e);
        if (rc == 0)
            return serve(sr, req, e);
        if (rc == -EISDIR)
            return redirect_to_dir(req);
        if (rc == TW_ENOMEM)
            return tw_request_respond_error(req, 500, "Out of memory.");
        return not_found(req);
    }
    /* A directory: its index file, else a listing. */
    for (const char *const *ix = sr->index; ix && *ix; ix++) {
        size_t il = strlen(*ix), j = k;
        if (j)
            rel[j++] = '/';
        memcpy(rel + j, *ix, il);
        rel[j + il] = 0;
        if (lookup(sr, req, rel, j + il, &e) == 0)
            return serve(sr, req, e);
    }
    rel[k] = 0;
    int dfd = open_beneath(sr, k ? rel : ".", O_RDONLY | O_DIRECTORY);
    if (dfd < 0)
        return not_found(req);
    if (sr->no_listing) {
        close(dfd);
        return tw_request_respond_error(req, 403, "Directory listing is not allowed.");
    }
    rc = listing(sr, req, dfd);
    close(dfd);
    return rc;
}

static void st_destroy(tw_resource *r)
{
    static_res *sr = (static_res *)r;
    for (size_t i = 0; i < sr->ncache; i++)
        fentry_unref(sr->cache[i]);
    free(sr->cache);
    pthread_mutex_destroy(&sr->lock);
    if (sr->root_fd >= 0)
        close(sr->root_fd);
    free(sr->single);
    free(sr->root_real);
    free(sr->default_type);
}

static const tw_resource_ops static_ops = {
    .size = sizeof(static_res),
    .is_leaf = true,
    .render_get = st_get,
    .destroy = st_destroy,
};

int tw_static_file_new(const char *path, const tw_static_options *opts, tw_resource **out)
{
    *out = NULL;
    if (!path || !*path)
        return TW_EINVAL;
    tw_static_options o;
    if (opts)
        o = *opts;
    else
        tw_static_options_init(&o);
    struct stat st;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? TW_ENOTFOUND : -errno;
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return TW_EINVAL;
    tw_resource *r = tw_resource_new(&static_ops);
    if (!r)
        return TW_ENOMEM;
    static_res *sr = (static_res *)r;
    sr->root_fd = -1;
    pthread_mutex_init(&sr->lock, NULL);
    sr->show_hidden = o.show_hidden;
    sr->no_listing = o.no_listing;
    sr->index = o.index_files ? o.index_files : default_index;
    sr->default_type = strdup(o.default_type ? o.default_type : "application/octet-stream");
    sr->valid_ns = o.cache_valid > 0 ? (int64_t)(o.cache_valid * 1e9) : 0;
    sr->cache_cap = o.cache_entries ? o.cache_entries : DEFAULT_ENTRIES;
    sr->cache = calloc(sr->cache_cap, sizeof *sr->cache);
    int rc = 0;
    if (S_ISDIR(st.st_mode)) {
        sr->root_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        sr->root_real = realpath(path, NULL);
    } else {
        char *copy = strdup(path);
        if (copy) {
            char *slash = strrchr(copy, '/');
            const char *dir = ".";
            const char *name = copy;
            if (slash) {
                *slash = 0;
                dir = slash == copy ? "/" : copy;
                name = slash + 1;
            }
            sr->single = strdup(name);
            sr->root_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
            sr->root_real = realpath(dir, NULL);
            free(copy);
        }
    }
    if (sr->root_fd < 0)
        rc = -errno;
    if (rc == 0 && (!sr->default_type || !sr->cache || !sr->root_real ||
                    (!S_ISDIR(st.st_mode) && !sr->single)))
        rc = TW_ENOMEM;
    if (rc < 0) {
        tw_resource_unref(r);
        return rc;
    }
    *out = r;
    return 0;
}
