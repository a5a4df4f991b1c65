/*
 * fwx fuzzing - evidence for finding S1 with the real libuv (not the fuzz model): a struct that
 * holds a uv_getaddrinfo_t and a timer is freed from the timer's close callback after
 * uv_cancel(), as socks.c's client_close() does. The lookup is executing (a slow resolver,
 * simulated by interposing getaddrinfo with a 300 ms delay), so uv_cancel() returns UV_EBUSY
 * and the callback later runs on freed memory: ASan reports heap-use-after-free in on_gai.
 * (Without the delay the lookup is still queued, uv_cancel() succeeds and libuv 1.44 calls back
 * with UV_ECANCELED in the same iteration, before the close callback: no error.)
 *   clang -g -fsanitize=address fuzz/libuv-cancel-check.c -luv -ldl -o /tmp/uvcheck && /tmp/uvcheck
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <uv.h>
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int getaddrinfo(const char *n, const char *s, const struct addrinfo *h, struct addrinfo **r) {
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) = dlsym(RTLD_NEXT, "getaddrinfo");
    usleep(300000); /* a slow DNS answer */
    return real(n, s, h, r);
}
typedef struct { uv_timer_t t; uv_getaddrinfo_t gai; int x; } holder;
static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    holder *h = req->data;
    fprintf(stderr, "callback status=%d\n", status);
    h->x = 0;
    uv_freeaddrinfo(res);
}
static void on_closed(uv_handle_t *t) { fprintf(stderr, "close cb: free\n"); free(t->data); }
static void on_timer(uv_timer_t *t) {
    holder *h = t->data;
    fprintf(stderr, "timer: uv_cancel=%d\n", uv_cancel((uv_req_t *)&h->gai));
    uv_close((uv_handle_t *)&h->t, on_closed);
}
int main(void) {
    uv_loop_t *loop = uv_default_loop();
    holder *h = calloc(1, sizeof *h);
    h->gai.data = h; h->t.data = h;
    uv_timer_init(loop, &h->t);
    uv_getaddrinfo(loop, &h->gai, on_gai, "localhost", "80", NULL);
    uv_timer_start(&h->t, on_timer, 50, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
