/* tt.c — helpers shared by twirl's own tests. */
#include "tt.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

tw_reactor *tt_reactor(void)
{
    tw_reactor_options o = { .signals = TW_SIGNALS_OFF };
    tw_reactor *r = NULL;
    if (tw_reactor_new(&o, &r) < 0) {
        fprintf(stderr, "tt_reactor: cannot create a reactor\n");
        abort();
    }
    return r;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool tt_run_until(tw_reactor *r, bool (*cond)(void *arg), void *arg, double timeout)
{
    double end = mono() + timeout;
    while (!cond(arg)) {
        double left = end - mono();
        if (left <= 0)
            return false;
        tw_reactor_iterate(r, left < 0.05 ? left : 0.05);
    }
    return true;
}

void tt_run_for(tw_reactor *r, double seconds)
{
    double end = mono() + seconds;
    double left;
    while ((left = end - mono()) > 0)
        tw_reactor_iterate(r, left);
}

int tt_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own fd */
}

const char *tt_bin(const char *name)
{
    static char path[4096];
    const char *dir = getenv("TWIRL_TEST_BIN_DIR");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : TWIRL_BINARY_DIR, name);
    return path;
}

char *tt_tmpdir(void)
{
    char *dir = strdup("/tmp/twirl-test-XXXXXX");
    if (!dir || !mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    return dir;
}

void tt_rmdir(char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "tt_rmdir: could not remove %s\n", dir);
    free(dir);
}
