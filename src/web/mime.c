/* mime.c — media types by file extension: /etc/mime.types (read once per
 * process), then a built-in table of the common web types for what that
 * file lacks or when it is absent. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/web.h"

enum { EXT_MAX = 31, SLOTS = 4096 /* power of two, > 2 x the entries kept */ };

typedef struct mime_slot {
    char ext[EXT_MAX + 1];
    const char *type; /* NULL: empty slot */
} mime_slot;

static mime_slot *table;
static size_t used;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Built in: what a web server is asked for most. */
static const char *const builtin[][2] = {
    { "html", "text/html" },       { "htm", "text/html" },
    { "css", "text/css" },         { "js", "text/javascript" },
    { "mjs", "text/javascript" },  { "json", "application/json" },
    { "map", "application/json" }, { "txt", "text/plain" },
    { "text", "text/plain" },      { "md", "text/markdown" },
    { "csv", "text/csv" },         { "xml", "application/xml" },
    { "svg", "image/svg+xml" },    { "png", "image/png" },
    { "jpg", "image/jpeg" },       { "jpeg", "image/jpeg" },
    { "gif", "image/gif" },        { "webp", "image/webp" },
    { "avif", "image/avif" },      { "ico", "image/vnd.microsoft.icon" },
    { "bmp", "image/bmp" },        { "woff", "font/woff" },
    { "woff2", "font/woff2" },     { "ttf", "font/ttf" },
    { "otf", "font/otf" },         { "wasm", "application/wasm" },
    { "pdf", "application/pdf" },  { "zip", "application/zip" },
    { "gz", "application/gzip" },  { "tar", "application/x-tar" },
    { "mp3", "audio/mpeg" },       { "ogg", "audio/ogg" },
    { "wav", "audio/wav" },        { "mp4", "video/mp4" },
    { "webm", "video/webm" },      { "c", "text/x-csrc" },
    { "h", "text/x-chdr" },
};

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static mime_slot *slot_for(const char *ext)
{
    for (unsigned i = hash(ext) & (SLOTS - 1);; i = (i + 1) & (SLOTS - 1))
        if (!table[i].type || strcmp(table[i].ext, ext) == 0)
            return &table[i];
}

/* Adds ext → type unless ext is known (the first word wins: the file's
 * order, then the built-ins fill gaps). type must live forever. */
static bool add(const char *ext, const char *type)
{
    size_t n = strlen(ext);
    if (n == 0 || n > EXT_MAX || used >= SLOTS / 2)
        return false;
    char low[EXT_MAX + 1];
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)(ext[i] >= 'A' && ext[i] <= 'Z' ? ext[i] | 0x20 : ext[i]);
    mime_slot *s = slot_for(low);
    if (s->type)
        return false;
    memcpy(s->ext, low, n + 1);
    s->type = type;
    used++;
    return true;
}

static void load_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *type = strtok_r(line, " \t\r\n", &save);
        if (!type || type[0] == '#' || !strchr(type, '/'))
            continue;
        /* One copy of the type per line, kept for the process's life
         * (the table is never freed: it is read once and shared). */
        char *kept = strdup(type);
        bool used_kept = false;
        for (char *ext; kept && (ext = strtok_r(NULL, " \t\r\n", &save)) != NULL;) {
            if (ext[0] == '#')
                break;
            used_kept |= add(ext, kept);
        }
        if (!used_kept)
            free(kept);
    }
    fclose(f);
}

static void load(void)
{
    table = calloc(SLOTS, sizeof *table);
    if (!table)
        return;
    const char *path = getenv("TWIRL_MIME_TYPES");
    load_file(path ? path : "/etc/mime.types");
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
        add(builtin[i][0], builtin[i][1]);
}

const char *tw_mime_type(const char *name, size_t len)
{
    pthread_once(&once, load);
    const char *dot = NULL;
    for (size_t i = len; i > 0; i--) {
        if (name[i - 1] == '.') {
            dot = name + i - 1;
            break;
        }
        if (name[i - 1] == '/')
            break;
    }
    if (!dot)
        return NULL;
    size_t n = (size_t)(name + len - dot - 1);
    if (n == 0 || n > EXT_MAX)
        return NULL;
    char low[EXT_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        char c = dot[1 + i];
        low[i] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
    }
    low[n] = 0;
    if (!table) {
        for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
            if (strcmp(builtin[i][0], low) == 0)
                return builtin[i][1];
        return NULL;
    }
    mime_slot *s = slot_for(low);
    return s->type;
}
