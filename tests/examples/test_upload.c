/* ctest: label=integration timeout=600 */
/* The upload example (examples/upload), run as a user runs it: the server
 * as a child process storing into a scratch directory, driven by the
 * example client or by a plain socket speaking its protocol. Checked: a
 * 50 MiB binary file arrives byte for byte and the client verifies the
 * server's HMAC-SHA256; the server's memory stays far below the file's
 * size, and a slow disk (--throttle-ms) pauses reading from the client;
 * hostile paths are refused with a message naming the rule and nothing is
 * written outside the upload directory; an upload cut short (the client
 * killed, the socket closed, the server stopped) leaves neither the final
 * name nor a temporary file behind.
 *
 * $TWIRL_CHILD_WRAPPER, when set, prefixes the programs' command lines
 * (e.g. valgrind); the memory bound is then not checked, nor in sanitizer
 * builds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tt.h"
#include "tt_child.h"

#define WAIT    20.0  /* seconds for any single expected event */
#define BIGWAIT 240.0 /* the 50 MiB transfer (generous: valgrind) */
#define SECRET  "test secret: not a real one"

enum { BIG_BYTES = 50 * 1024 * 1024 };

static char *scratch; /* per test: up/ (the upload dir), out/ (outside), files */
static char up[600], out[600], keyfile[600];

static void pathf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pathf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < size);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Entries of dir (other than . and ..), and how many are temporary files. */
static int count_entries(const char *dir, int *temps)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    *temps = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        if (strncmp(e->d_name, ".upload-", 8) == 0)
            (*temps)++;
    }
    closedir(d);
    return n;
}

static int temp_files(const char *dir)
{
    int temps;
    count_entries(dir, &temps);
    return temps;
}

static int setup(void **state)
{
    scratch = tt_tmpdir();
    pathf(up, sizeof up, "%s/up", scratch);
    pathf(out, sizeof out, "%s/out", scratch);
    pathf(keyfile, sizeof keyfile, "%s/key", scratch);
    assert_int_equal(mkdir(up, 0755), 0);
    assert_int_equal(mkdir(out, 0755), 0);
    write_file(keyfile, SECRET "\n", strlen(SECRET) + 1);
    return 0;
}

static int teardown(void **state)
{
    tt_rmdir(scratch);
    scratch = NULL;
    return 0;
}

/* ------------------------------------------------------------ children */

enum { MAX_CHILDREN = 4 };
static tt_child children[MAX_CHILDREN];
static bool in_use[MAX_CHILDREN];

static tt_child *start(const char *name, const char *const args[])
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (!in_use[i]) {
            int rc = tt_child_start_bin(&children[i], name, args);
            if (rc == -ENOENT)
                fail_msg("%s is not built (build the example_* targets)", tt_bin(name));
            if (rc < 0)
                fail_msg("cannot start %s: %s", name, strerror(-rc));
            in_use[i] = true;
            return &children[i];
        }
    }
    fail_msg("too many children");
    return NULL;
}

static void release(tt_child *c)
{
    tt_child_kill(c);
    in_use[c - children] = false;
}

static int group_teardown(void **state)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (in_use[i])
            release(&children[i]);
    return 0;
}

/* Waits for a line of c's output containing want; returns it. */
static const char *wait_line(tt_child *c, const char *want, double timeout)
{
    double end = tt_now() + timeout;
    for (;;) {
        double left = end - tt_now();
        const char *line = left > 0 ? tt_child_line(c, left) : NULL;
        if (!line)
            fail_msg("no line with \"%s\" within %.0f s", want, timeout);
        if (strstr(line, want))
            return line;
    }
}

static tt_child *start_server(uint16_t *port, const char *throttle_ms)
{
    tt_child *s;
    if (throttle_ms)
        s = start("example_upload_server",
                  (const char *const[]){ "--dir", up, "--secret-file", keyfile, "--port", "0",
                                         "--throttle-ms", throttle_ms, NULL });
    else
        s = start("example_upload_server", (const char *const[]){ "--dir", up, "--secret-file",
                                                                  keyfile, "--port", "0", NULL });
    const char *line = wait_line(s, "listening on port ", WAIT);
    *port = (uint16_t)strtoul(strstr(line, "port ") + 5, NULL, 10);
    assert_true(*port > 0);
    return s;
}

static void stop_server(tt_child *s)
{
    int status = tt_child_stop(s, SIGTERM, WAIT, NULL);
    in_use[s - children] = false;
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Runs the example client to the end; returns its exit status and keeps
 * its output in *output (borrowed until the next call). */
static int run_client(uint16_t port, const char *local, const char *remote, const char *secret,
                      double timeout, const char **output)
{
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    tt_child *c;
    if (secret)
        c = start("example_upload_client", (const char *const[]){ "--port", portstr, "--secret",
                                                                  secret, local, remote, NULL });
    else
        c = start("example_upload_client",
                  (const char *const[]){ "--port", portstr, "--secret-file", keyfile, local, remote,
                                         NULL });
    const char *rest = tt_child_rest(c, timeout);
    static char saved[8192];
    snprintf(saved, sizeof saved, "%s", rest);
    int status = tt_child_wait(c, WAIT);
    in_use[c - children] = false;
    if (status == -1 || !WIFEXITED(status))
        fail_msg("the client did not exit normally; output:\n%s", saved);
    *output = saved;
    return WEXITSTATUS(status);
}

/* Memory is measured only for plain builds: a wrapper (valgrind) or the
 * sanitizers' allocator (ASan keeps freed memory in quarantine) inflate it
 * by amounts unrelated to the program. */
static bool memory_checked(void)
{
#ifdef TWIRL_SANITIZE
    return false;
#else
    return getenv("TWIRL_CHILD_WRAPPER") == NULL;
#endif
}

/* The server's peak resident memory, in KiB (0 when unknown). */
static long peak_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* ------------------------------------------------------------ data */

/* Deterministic bytes with every value, CR LF pairs, NULs and the seed's
 * "*end*" marker in them: what a line protocol would have mangled. */
static char *make_data(size_t len)
{
    char *d = malloc(len);
    assert_non_null(d);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d[i] = (char)(x >> 24);
    }
    static const char marks[] = "\r\n*end*\r\n\0*begin*\n";
    for (size_t at = 1000; at + sizeof marks < len; at += 1 << 20)
        memcpy(d + at, marks, sizeof marks);
    return d;
}

static void digest_file(const char *path, unsigned char digest[32])
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        EVP_DigestUpdate(md, buf, n);
    EVP_DigestFinal_ex(md, digest, NULL);
    EVP_MD_CTX_free(md);
    fclose(f);
}

static void hmac_hex(const void *data, size_t len, char hex[65])
{
    unsigned char mac[32];
    unsigned int n = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), data, len, mac, &n);
    assert_int_equal(n, 32);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
}

/* ------------------------------------------------------------ a raw client */

static int dial(uint16_t port)
{
    int fd = tt_connect_loopback(port);
    if (fd < 0)
        fail_msg("connect: %s", strerror(-fd));
    const char *hello = tt_recv_line(fd, WAIT);
    assert_string_equal(hello, "HELLO twirl upload server\r\n");
    return fd;
}

static void send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* Sends an UPLOAD line whose path may hold any byte (NUL included). */
static const char *upload_cmd(int fd, size_t size, const char *path, size_t plen)
{
    char head[64];
    snprintf(head, sizeof head, "UPLOAD %zu ", size);
    send_str(fd, head);
    send_all(fd, path, plen);
    send_str(fd, "\r\n");
    return tt_recv_line(fd, WAIT);
}

/* ------------------------------------------------------------ the tests */

static void big_binary_file_end_to_end(void **state)
{
    uint16_t port;
    tt_child *server = start_server(&port, NULL);
    char local[700], stored[700];
    pathf(local, sizeof local, "%s/big.bin", scratch);
    char *data = make_data(BIG_BYTES);
    write_file(local, data, BIG_BYTES);
    free(data);

    double t0 = tt_now();
    const char *output;
    int rc = run_client(port, local, "big.bin", NULL, BIGWAIT, &output);
    double took = tt_now() - t0;
    if (rc != 0 || !strstr(output, "upload verified"))
        fail_msg("client exit %d:\n%s", rc, output);
    const char *line = wait_line(server, "stored 'big.bin' (52428800 bytes", WAIT);
    /* The server said the same HMAC the client computed. */
    char hex[65];
    const char *h = strstr(output, "local HMAC-SHA256:    ");
    assert_non_null(h);
    snprintf(hex, sizeof hex, "%s", h + strlen("local HMAC-SHA256:    "));
    assert_non_null(strstr(line, hex));

    pathf(stored, sizeof stored, "%s/big.bin", up);
    unsigned char a[32], b[32];
    digest_file(local, a);
    digest_file(stored, b);
    assert_memory_equal(a, b, 32);
    struct stat st;
    assert_int_equal(stat(stored, &st), 0);
    assert_int_equal(st.st_size, BIG_BYTES);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(temp_files(up), 0);

    long kib = peak_rss_kib(server->pid);
    print_message("  50 MiB in %.2f s (%.0f MiB/s); server peak RSS %ld KiB\n", took, 50 / took,
                  kib);
    if (memory_checked() && kib > 0)
        assert_true(kib < 32 * 1024); /* far below the file: streamed in chunks */

    /* The same key from the command line; a wrong key is caught. */
    rc = run_client(port, local, "again.bin", SECRET, BIGWAIT, &output);
    assert_int_equal(rc, 0);
    rc = run_client(port, keyfile, "k.txt", "another key", WAIT, &output);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(output, "the HMACs differ"));
    stop_server(server);
}

/* The disk is slower than the network: reading pauses while the pool is
 * behind, and memory stays bounded. */
static void slow_disk_pauses_reading(void **state)
{
    uint16_t port;
    tt_child *server = start_server(&port, "30");
    char local[700];
    pathf(local, sizeof local, "%s/slow.bin", scratch);
    enum { SLOW_BYTES = 24 * 1024 * 1024 };
    char *data = make_data(SLOW_BYTES);
    write_file(local, data, SLOW_BYTES);
    free(data);
    const char *output;
    int rc = run_client(port, local, "slow.bin", NULL, BIGWAIT, &output);
    if (rc != 0)
        fail_msg("client exit %d:\n%s", rc, output);
    const char *line = wait_line(server, "stored 'slow.bin'", WAIT);
    unsigned pauses = 0;
    const char *at = strstr(line, "reading paused ");
    assert_non_null(at);
    pauses = (unsigned)strtoul(at + strlen("reading paused "), NULL, 10);
    long kib = peak_rss_kib(server->pid);
    print_message("  24 MiB to a slow disk: reading paused %u times; server peak RSS %ld KiB\n",
                  pauses, kib);
    assert_true(pauses > 0);
    if (memory_checked() && kib > 0)
        assert_true(kib < 32 * 1024);
    stop_server(server);
}

/* Protocol details with a plain socket: binary content, an empty file,
 * several uploads on one connection, a client that sends the next command
 * right behind the content. */
static void protocol_by_hand(void **state)
{
    uint16_t port;
    tt_child *server = start_server(&port, NULL);
    int fd = dial(port);
    static const char content[] = "line one\r\n*end*\r\n\0tail without newline";
    size_t clen = sizeof content - 1;
    char hex[65], want[80], path[700];

    assert_string_equal(upload_cmd(fd, clen, "a.bin", 5), "READY\r\n");
    send_all(fd, content, clen);
    hmac_hex(content, clen, hex);
    snprintf(want, sizeof want, "HMAC %s\r\n", hex);
    assert_string_equal(tt_recv_line(fd, WAIT), want);

    /* Empty file. */
    assert_string_equal(upload_cmd(fd, 0, "empty", 5), "READY\r\n");
    hmac_hex("", 0, hex);
    snprintf(want, sizeof want, "HMAC %s\r\n", hex);
    assert_string_equal(tt_recv_line(fd, WAIT), want);

    /* Content and the next command in one send. */
    assert_string_equal(upload_cmd(fd, 5, "b.txt", 5), "READY\r\n");
    send_str(fd, "helloUPLOAD 3 c.txt\r\n");
    hmac_hex("hello", 5, hex);
    snprintf(want, sizeof want, "HMAC %s\r\n", hex);
    assert_string_equal(tt_recv_line(fd, WAIT), want);
    assert_string_equal(tt_recv_line(fd, WAIT), "READY\r\n");
    send_str(fd, "abc");
    hmac_hex("abc", 3, hex);
    snprintf(want, sizeof want, "HMAC %s\r\n", hex);
    assert_string_equal(tt_recv_line(fd, WAIT), want);

    /* A file replaced by a later upload of the same name. */
    assert_string_equal(upload_cmd(fd, 2, "b.txt", 5), "READY\r\n");
    send_str(fd, "hi");
    assert_non_null(strstr(tt_recv_line(fd, WAIT), "HMAC "));

    send_str(fd, "NOPE\r\n");
    assert_string_equal(tt_recv_line(fd, WAIT), "ERR unknown command 'NOPE'\r\n");
    send_str(fd, "UPLOAD x y\r\n");
    assert_string_equal(tt_recv_line(fd, WAIT), "ERR usage: UPLOAD <size> <path>\r\n");
    close(fd);

    char buf[64];
    pathf(path, sizeof path, "%s/a.bin", up);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof buf, f), clen);
    fclose(f);
    assert_memory_equal(buf, content, clen);
    pathf(path, sizeof path, "%s/empty", up);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    pathf(path, sizeof path, "%s/b.txt", up);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 2);
    assert_int_equal(temp_files(up), 0);
    stop_server(server);
}

/* Every hostile path is refused with its reason, and nothing appears
 * outside the upload directory (nor inside, beyond what the test made). */
static void hostile_paths_refused(void **state)
{
    uint16_t port;
    tt_child *server = start_server(&port, NULL);
    char path[700], target[700];
    /* A directory link and a file link, both pointing outside. */
    pathf(path, sizeof path, "%s/evil", up);
    assert_int_equal(symlink(out, path), 0);
    pathf(target, sizeof target, "%s/victim", out);
    write_file(target, "precious", 8);
    pathf(path, sizeof path, "%s/link", up);
    assert_int_equal(symlink(target, path), 0);
    pathf(path, sizeof path, "%s/sub", up);
    assert_int_equal(mkdir(path, 0755), 0);
    pathf(path, sizeof path, "%s/plainfile", up);
    write_file(path, "x", 1);

    char longname[300], longpath[5000];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    for (size_t i = 0; i < sizeof longpath - 1; i++)
        longpath[i] = i % 100 == 99 ? '/' : 'b';
    longpath[sizeof longpath - 1] = '\0';

    static const struct {
        const char *path;
        size_t len; /* 0: strlen */
        const char *reason;
    } cases[] = {
        { "../x", 0, "'..' is not allowed in paths" },
        { "sub/../../x", 0, "'..' is not allowed in paths" },
        { "/etc/passwd", 0, "absolute paths are not allowed" },
        { "evil/x", 0, "'evil' is a symbolic link (links are not followed)" },
        { "sub/../evil/x", 0, "'..' is not allowed in paths" },
        { "link", 0, "'link' is a symbolic link (links are not followed)" },
        { "a\0b", 3, "the name contains a NUL byte" },
        { "tab\there", 0, "control characters are not allowed in names" },
        { "sub/", 0, "the path names no file" },
        { "sub", 0, "is a directory" },
        { "nodir/x", 0, "no such directory 'nodir'" },
        { "plainfile/x", 0, "'plainfile' is not a directory" },
        { NULL, 0, "a path component is longer than 255 bytes" },
        { NULL, 1, "the name is longer than 4095 bytes" },
    };
    int fd = dial(port);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = cases[i].path ? cases[i].path : cases[i].len ? longpath : longname;
        size_t len = cases[i].path && cases[i].len ? cases[i].len : strlen(p);
        const char *answer = upload_cmd(fd, 8, p, len);
        if (strncmp(answer, "ERR refused ", 12) != 0 || !strstr(answer, cases[i].reason))
            fail_msg("case %zu: expected a refusal naming \"%s\"; got \"%s\"", i, cases[i].reason,
                     answer);
    }
    /* The connection is still usable: a good upload goes through. */
    assert_string_equal(upload_cmd(fd, 2, "sub/ok", 6), "READY\r\n");
    send_str(fd, "ok");
    assert_non_null(strstr(tt_recv_line(fd, WAIT), "HMAC "));
    /* A line longer than the limit: refused, and the connection closed. */
    char *huge = malloc(9000);
    memset(huge, 'x', 9000);
    send_all(fd, huge, 9000);
    free(huge);
    assert_non_null(strstr(tt_recv_line(fd, WAIT), "ERR line too long"));
    bool eof;
    char c;
    tt_recv_upto(fd, &c, 1, WAIT, &eof);
    assert_true(eof);
    close(fd);

    /* The example client reports a refusal with exit status 2. */
    const char *output;
    assert_int_equal(run_client(port, keyfile, "../escape", NULL, WAIT, &output), 2);
    assert_non_null(strstr(output, "server refused: refused '../escape': '..' is not allowed"));
    assert_int_equal(run_client(port, keyfile, "/etc/passwd", NULL, WAIT, &output), 2);
    assert_non_null(strstr(output, "absolute paths are not allowed"));

    /* Nothing written outside; the victim untouched; inside, only what we
     * made and sub/ok. */
    int temps;
    assert_int_equal(count_entries(out, &temps), 1);
    char buf[16] = { 0 };
    FILE *f = fopen(target, "rb");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof buf, f), 8);
    fclose(f);
    assert_string_equal(buf, "precious");
    assert_int_equal(count_entries(up, &temps), 4); /* evil, link, sub, plainfile */
    assert_int_equal(temps, 0);
    pathf(path, sizeof path, "%s/sub", up);
    assert_int_equal(count_entries(path, &temps), 1); /* ok */
    pathf(path, sizeof path, "%s/escape", scratch);
    assert_false(exists(path));
    assert_false(exists("/escape"));
    stop_server(server);
}

/* The socket closes half-way: the temporary file is removed, the final
 * name never appears. */
static void socket_closed_mid_upload(void **state)
{
    uint16_t port;
    tt_child *server = start_server(&port, NULL);
    int fd = dial(port);
    enum { TOTAL = 10 * 1024 * 1024, SENT = 3 * 1024 * 1024 };
    assert_string_equal(upload_cmd(fd, TOTAL, "part.bin", 8), "READY\r\n");
    char *data = make_data(SENT);
    send_all(fd, data, SENT);
    free(data);
    close(fd);
    wait_line(server, "upload of 'part.bin' interrupted: temporary file removed", WAIT);
    char path[700];
    pathf(path, sizeof path, "%s/part.bin", up);
    assert_false(exists(path));
    assert_int_equal(temp_files(up), 0);
    stop_server(server);
}

/* The example client killed (SIGKILL) in the middle of a transfer to a
 * slow server. */
static void client_killed_mid_transfer(void **state)
{
    uint16_t port;
    tt_child *server = start_server(&port, "50");
    char local[700], portstr[8];
    pathf(local, sizeof local, "%s/killed.bin", scratch);
    enum { KILLED_BYTES = 40 * 1024 * 1024 };
    char *data = make_data(KILLED_BYTES);
    write_file(local, data, KILLED_BYTES);
    free(data);
    snprintf(portstr, sizeof portstr, "%u", port);
    tt_child *client =
        start("example_upload_client", (const char *const[]){ "--port", portstr, "--secret-file",
                                                              keyfile, local, "killed.bin", NULL });
    wait_line(client, "uploading ", WAIT);
    /* Under way: the temporary file exists, the final one does not. */
    double end = tt_now() + WAIT;
    while (temp_files(up) == 0 && tt_now() < end)
        usleep(10000);
    assert_int_equal(temp_files(up), 1);
    usleep(200000);
    release(client); /* SIGKILL */
    wait_line(server, "upload of 'killed.bin' interrupted: temporary file removed", WAIT);
    char path[700];
    pathf(path, sizeof path, "%s/killed.bin", up);
    assert_false(exists(path));
    assert_int_equal(temp_files(up), 0);
    stop_server(server);
}

/* The server stopped (SIGTERM) during an upload: it exits cleanly and
 * leaves no temporary file. */
static void server_stopped_mid_upload(void **state)
{
    uint16_t port;
    tt_child *server = start_server(&port, "50");
    int fd = dial(port);
    assert_string_equal(upload_cmd(fd, 8 * 1024 * 1024, "stop.bin", 8), "READY\r\n");
    char *data = make_data(2 * 1024 * 1024);
    send_all(fd, data, 2 * 1024 * 1024);
    free(data);
    double end = tt_now() + WAIT;
    while (temp_files(up) == 0 && tt_now() < end)
        usleep(10000);
    assert_int_equal(temp_files(up), 1);
    stop_server(server);
    close(fd);
    char path[700];
    pathf(path, sizeof path, "%s/stop.bin", up);
    assert_false(exists(path));
    assert_int_equal(temp_files(up), 0);
}

/* A write that fails (the file size limit, standing for a full disk): the
 * client is told why once its bytes are in, the temporary file goes, and
 * the connection stays usable. */
static void write_failure_reported(void **state)
{
    if (access("/usr/bin/prlimit", X_OK) != 0)
        skip();
    char bin[4096];
    snprintf(bin, sizeof bin, "%s", tt_bin("example_upload_server"));
    tt_child *s = NULL;
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (!in_use[i]) {
            s = &children[i];
            const char *argv[] = { "/usr/bin/prlimit", "--fsize=1048576", bin,      "--dir", up,
                                   "--secret-file",    keyfile,           "--port", "0",     NULL };
            assert_int_equal(tt_child_start(s, argv), 0);
            in_use[i] = true;
            break;
        }
    }
    assert_non_null(s);
    const char *line = wait_line(s, "listening on port ", WAIT);
    uint16_t port = (uint16_t)strtoul(strstr(line, "port ") + 5, NULL, 10);
    int fd = dial(port);
    enum { TOO_BIG = 3 * 1024 * 1024 };
    assert_string_equal(upload_cmd(fd, TOO_BIG, "full.bin", 8), "READY\r\n");
    char *data = make_data(TOO_BIG);
    send_all(fd, data, TOO_BIG);
    free(data);
    const char *answer = tt_recv_line(fd, WAIT);
    if (!strstr(answer, "ERR write failed: File too large"))
        fail_msg("expected a write failure; got \"%s\"", answer);
    wait_line(s, "upload of 'full.bin' failed: temporary file removed", WAIT);
    char path[700];
    pathf(path, sizeof path, "%s/full.bin", up);
    assert_false(exists(path));
    assert_int_equal(temp_files(up), 0);
    /* Still usable. */
    assert_string_equal(upload_cmd(fd, 2, "small", 5), "READY\r\n");
    send_str(fd, "ok");
    assert_non_null(strstr(tt_recv_line(fd, WAIT), "HMAC "));
    close(fd);
    stop_server(s);
}

static void bad_usage(void **state)
{
    const char *output;
    /* No secret at all, then an empty secret file: refused before
     * anything starts. */
    tt_child *s = start("example_upload_server", (const char *const[]){ "--dir", up, NULL });
    int status = tt_child_wait(s, WAIT);
    in_use[s - children] = false;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    char empty[700];
    pathf(empty, sizeof empty, "%s/empty-key", scratch);
    write_file(empty, "\n", 1);
    s = start("example_upload_server",
              (const char *const[]){ "--dir", up, "--secret-file", empty, "--port", "0", NULL });
    status = tt_child_wait(s, WAIT);
    in_use[s - children] = false;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    /* A client with nowhere to connect to. */
    uint16_t dead = tt_dead_port();
    assert_int_equal(run_client(dead, keyfile, "x", NULL, WAIT, &output), 1);
    assert_non_null(strstr(output, "cannot connect"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(big_binary_file_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(slow_disk_pauses_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(protocol_by_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile_paths_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(socket_closed_mid_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(client_killed_mid_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(server_stopped_mid_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(write_failure_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_usage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}
