/*
 * fwx fuzzing - a plain main() for the libFuzzer targets, so that seeds and saved crashes can be
 * replayed without libFuzzer (fuzz/replay.sh). Each argument is a file or a directory of files;
 * each file is passed once to LLVMFuzzerTestOneInput. A crash or sanitizer report ends the
 * process with a non-zero status, naming the file on stderr first.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (n == cap)
            buf = realloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    fprintf(stderr, "replay %s (%zu bytes)\n", path, n);
    /* An exact-size copy, so a read past the input is seen by ASan. */
    uint8_t *exact = malloc(n ? n : 1);
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
    int bad = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            perror(argv[i]);
            bad = 1;
            continue;
        }
        if (!S_ISDIR(sb.st_mode)) {
            bad |= run_file(argv[i]);
            count++;
            continue;
        }
        struct dirent **ents;
        int ne = scandir(argv[i], &ents, NULL, alphasort);
        if (ne < 0) {
            perror(argv[i]);
            bad = 1;
            continue;
        }
        for (int k = 0; k < ne; k++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], ents[k]->d_name);
            if (ents[k]->d_name[0] != '.' && stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
                bad |= run_file(p);
                count++;
            }
            free(ents[k]);
        }
        free(ents);
    }
    (void)cmp;
    fprintf(stderr, "replayed %d input(s)%s\n", count, bad ? ", with errors" : ", all clean");
    return bad;
}
