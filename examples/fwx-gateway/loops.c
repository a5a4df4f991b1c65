/*
 * fwx-gateway: N event loops, one thread and one firewall each (see loops.h).
 * SPDX-License-Identifier: MIT
 */
#include "loops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A job's life, under its loop's lock. GIVEN_UP: its caller stopped waiting before it ran, so
   the loop frees it; REFUSED: the loop stopped before running it, so its caller frees it;
   DETACHED: nobody waits (the stop), the loop frees it after running it. */
enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_GIVEN_UP, JOB_REFUSED, JOB_DETACHED };

struct gw_job {
    gw_job *next;
    gw_loop_fn fn;
    void *arg;
    int state; /* JOB_*, under the loop's lock */
};

static gw_loop *loops;
static unsigned n_loops;
static _Thread_local gw_loop *self;

int gw_loops_init(uv_loop_t *loop0, unsigned n)
{
    if (n == 0 || n > GW_MAX_LOOPS || (loops = calloc(n, sizeof *loops)) == NULL)
        return -1;
    n_loops = n;
    for (unsigned i = 0; i < n; i++) {
        gw_loop *L = &loops[i];
        L->index = i;
        L->loop = i == 0 ? loop0 : &L->own;
        uv_mutex_init(&L->lock);
        uv_cond_init(&L->cond);
    }
    self = &loops[0];
    return 0;
}

unsigned gw_loops_count(void) { return n_loops; }

gw_loop *gw_loop_at(unsigned i) { return i < n_loops ? &loops[i] : NULL; }

gw_loop *gw_loop_self(void) { return self; }

/* Takes the queued jobs and runs them, oldest first (the queue is pushed at its head). */
static void wake_cb(uv_async_t *a)
{
    gw_loop *L = a->data;
    uv_mutex_lock(&L->lock);
    gw_job *list = L->jobs, *rev = NULL;
    L->jobs = NULL;
    uv_mutex_unlock(&L->lock);
    while (list != NULL) {
        gw_job *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    for (gw_job *j = rev, *next; j != NULL; j = next) {
        next = j->next;
        uv_mutex_lock(&L->lock);
        int state = j->state;
        bool run = state != JOB_GIVEN_UP && (L->open || state == JOB_DETACHED);
        if (!run && state != JOB_GIVEN_UP) { /* after the stop: refused */
            j->state = JOB_REFUSED;
            uv_cond_broadcast(&L->cond);
        } else if (run && state != JOB_DETACHED) {
            j->state = JOB_RUNNING;
        }
        uv_mutex_unlock(&L->lock);
        if (!run) {
            if (state == JOB_GIVEN_UP)
                free(j);
            continue;
        }
        j->fn(L, j->arg);
        if (state == JOB_DETACHED) {
            free(j);
            continue;
        }
        uv_mutex_lock(&L->lock);
        j->state = JOB_DONE; /* its caller frees it */
        uv_cond_broadcast(&L->cond);
        uv_mutex_unlock(&L->lock);
    }
}

static void stop_job(gw_loop *L, void *arg)
{
    (void)arg;
    uv_mutex_lock(&L->lock);
    L->open = false;
    gw_job *left = L->jobs;
    L->jobs = NULL;
    /* The wake handle closes: what is still queued never runs. */
    for (gw_job *j = left, *next; j != NULL; j = next) {
        next = j->next;
        if (j->state == JOB_GIVEN_UP)
            free(j);
        else
            j->state = JOB_REFUSED;
    }
    uv_cond_broadcast(&L->cond);
    uv_mutex_unlock(&L->lock);
    if (L->stop != NULL)
        L->stop(L, L->setup_arg);
    uv_close((uv_handle_t *)&L->wake, NULL);
}

static void thread_main(void *arg)
{
    gw_loop *L = arg;
    self = L;
    if (uv_loop_init(L->loop) != 0) {
        fprintf(stderr, "fwx-gateway: loop %u: cannot make its event loop\n", L->index);
        uv_mutex_lock(&L->lock);
        L->setup_status = 1;
        uv_cond_broadcast(&L->cond);
        uv_mutex_unlock(&L->lock);
        return;
    }
    uv_async_init(L->loop, &L->wake, wake_cb);
    L->wake.data = L;
    int status = L->setup(L, L->setup_arg);
    uv_mutex_lock(&L->lock);
    L->setup_status = status;
    L->open = status == 0;
    uv_cond_broadcast(&L->cond);
    uv_mutex_unlock(&L->lock);
    if (status != 0) {
        if (L->stop != NULL)
            L->stop(L, L->setup_arg);
        uv_close((uv_handle_t *)&L->wake, NULL);
    }
    uv_run(L->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(L->loop);
    if (rc != 0)
        fprintf(stderr, "fwx-gateway: loop %u: handles left open at exit: %s\n", L->index, uv_strerror(rc));
}

int gw_loop_start(gw_loop *L, gw_loop_setup_fn setup, gw_loop_fn stop, void *arg)
{
    L->setup = setup;
    L->stop = stop;
    L->setup_arg = arg;
    L->setup_status = -1000; /* running */
    if (uv_thread_create(&L->thread, thread_main, L) != 0)
        return 1;
    L->thread_started = true;
    /* The setup opens sockets and loads plugins: it ends, or the watchdog ends the process. */
    uv_mutex_lock(&L->lock);
    while (L->setup_status == -1000)
        uv_cond_wait(&L->cond, &L->lock);
    int status = L->setup_status;
    uv_mutex_unlock(&L->lock);
    return status;
}

int gw_loop_call(gw_loop *L, gw_loop_fn fn, void *arg)
{
    if (L == self) {
        fn(L, arg);
        return 0;
    }
    gw_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return -1;
    j->fn = fn;
    j->arg = arg;
    uv_mutex_lock(&L->lock);
    if (!L->open) {
        uv_mutex_unlock(&L->lock);
        free(j);
        return -1;
    }
    j->state = JOB_QUEUED;
    j->next = L->jobs;
    L->jobs = j;
    uv_async_send(&L->wake);
    uint64_t deadline = uv_hrtime() + (uint64_t)GW_LOOP_CALL_TIMEOUT_MS * 1000000;
    int rc = 0;
    for (;;) {
        if (j->state == JOB_DONE)
            break;
        if (j->state == JOB_REFUSED) {
            rc = -1;
            break;
        }
        uint64_t now = uv_hrtime();
        if (j->state == JOB_QUEUED && now >= deadline) {
            j->state = JOB_GIVEN_UP; /* the loop frees it when it gets there */
            uv_mutex_unlock(&L->lock);
            return -1;
        }
        /* A running job is waited for to its end: its arguments live on our stack. */
        (void)uv_cond_timedwait(&L->cond, &L->lock, now < deadline ? deadline - now : 100000000);
    }
    uv_mutex_unlock(&L->lock);
    free(j);
    return rc;
}

void gw_loop_stop(gw_loop *L)
{
    if (L == NULL || !L->thread_started)
        return;
    gw_job *j = calloc(1, sizeof *j);
    uv_mutex_lock(&L->lock);
    bool open = L->open;
    if (open && j != NULL) {
        j->fn = stop_job;
        j->state = JOB_DETACHED;
        j->next = L->jobs;
        L->jobs = j;
        uv_async_send(&L->wake);
    }
    uv_mutex_unlock(&L->lock);
    if (!open || j == NULL)
        free(j);
}

void gw_loops_join(void)
{
    for (unsigned i = 1; i < n_loops; i++)
        if (loops[i].thread_started)
            uv_thread_join(&loops[i].thread);
    for (unsigned i = 0; i < n_loops; i++) {
        uv_mutex_destroy(&loops[i].lock);
        uv_cond_destroy(&loops[i].cond);
    }
    free(loops);
    loops = NULL;
    n_loops = 0;
}
