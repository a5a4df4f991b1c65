/*
 * fwx - the plugin watchdog: a thread that watches the loop thread's calls into plugins.
 *
 * Plugins run in the gateway's process, on its loop thread (catalog rows 45-47, doc/security.md): a
 * handler that blocks stalls every client, one that crashes ends every session. Around every
 * call into a plugin the loop thread gives a heartbeat (fwx__plugin_enter / fwx__plugin_leave
 * in firewall/internal.h: four relaxed stores, no lock, no clock; bench/plugin_call.c measures
 * it). This thread wakes every `tick` and compares the heartbeat's sequence number with what
 * it saw last time: a call is running (depth > 0) and the number has not moved, so the same
 * call has run at least since the tick that first saw it. Past the soft limit it logs at error,
 * naming the plugin and the event, and quarantines the plugin (no new sessions; the dispatch in
 * lib/core reads the flag). Past the hard limit it writes one last line with write(2) and
 * _exit(70)s: a loop that does not come back cannot withdraw anything, and the process's end
 * is what takes every socket (user mode) with it; the service manager restarts the gateway.
 *
 * Bounds: the soft line comes between soft and soft + tick after the call began, the exit
 * between hard and hard + tick, tick = min(soft, hard) / 4, clamped to 5..250 ms.
 *
 * The fatal-signal handler names the plugin that was running when the process crashed. It
 * uses only async-signal-safe calls (write, signal, raise) and reads the heartbeats of the
 * registered watchdogs, never the heap, except the plugin's name, allocated at load and freed
 * only after the watchdog is gone.
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"
#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The exit status past the hard limit: EX_SOFTWARE, "internal software error". */
#define WD_EXIT_STATUS 70
/* Firewalls whose heartbeat the fatal-signal handler reads: enough for a host that runs one
   firewall per event loop on a large machine (fwx-gateway runs at most 64 loops). */
#define WD_MAX_REGISTERED 72

typedef struct fwx__watchdog {
    fwx__heartbeat hb;
    fwx_firewall *fw;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    uint32_t soft_ms, hard_ms, tick_ms;
    int slot; /* in registered[], -1 for none */
} fwx__watchdog;

static _Atomic(fwx__heartbeat *) registered[WD_MAX_REGISTERED];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The event's name without formatting (safe in a signal handler). */
static const char *event_label(uint32_t event)
{
    if (event == 0)
        return "a call";
    char unused[FWX__EVENT_NAME_LEN];
    const char *n = fwx__event_name(event, unused);
    return n == unused ? "an event" : n; /* the formatted fallback is on our stack: not kept */
}

/* ---- async-signal-safe line building ---------------------------------------------------- */

typedef struct line_buf {
    char b[512];
    size_t n;
} line_buf;

static void lb_str(line_buf *l, const char *s)
{
    for (; s != NULL && *s != '\0' && l->n < sizeof l->b - 1; s++)
        l->b[l->n++] = *s;
}

static void lb_uint(line_buf *l, uint64_t v)
{
    char d[24];
    size_t k = 0;
    do
        d[k++] = (char)('0' + v % 10);
    while ((v /= 10) != 0 && k < sizeof d);
    while (k > 0 && l->n < sizeof l->b - 1)
        l->b[l->n++] = d[--k];
}

static void lb_write(line_buf *l)
{
    l->b[l->n++] = '\n';
    const char *p = l->b;
    size_t left = l->n;
    /* A bounded number of tries, not an invariant: this runs on the way to _exit, where a
       stderr that keeps failing with EINTR must not keep the process alive. */
    for (int tries = 0; left > 0 && tries < 64; tries++) {
        ssize_t w = write(STDERR_FILENO, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        left -= (size_t)w;
    }
}

/* ---- fatal signals ---------------------------------------------------------------------- */

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
static atomic_bool handlers_installed;
static char altstack[64 * 1024];

static const char *signal_label(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    default: return "a fatal signal";
    }
}

static void on_fatal_signal(int sig)
{
    int saved_errno = errno;
    line_buf l = {.n = 0};
    lb_str(&l, "fwx: fatal ");
    lb_str(&l, signal_label(sig));
    bool named = false;
    for (size_t i = 0; i < WD_MAX_REGISTERED; i++) {
        fwx__heartbeat *hb = atomic_load_explicit(&registered[i], memory_order_acquire);
        if (hb == NULL || atomic_load_explicit(&hb->depth, memory_order_relaxed) == 0)
            continue;
        fwx__plugin *p = atomic_load_explicit(&hb->plugin, memory_order_relaxed);
        if (p == NULL)
            continue;
        lb_str(&l, named ? " and" : " in");
        lb_str(&l, " plugin \"");
        lb_str(&l, p->name);
        lb_str(&l, "\" (");
        lb_str(&l, event_label(atomic_load_explicit(&hb->event, memory_order_relaxed)));
        lb_str(&l, ")");
        named = true;
    }
    if (!named)
        lb_str(&l, " with no plugin running");
    lb_str(&l, ", exiting");
    lb_write(&l);
    errno = saved_errno;
    /* The default action ends the process with the signal (and its core dump). */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Installs the handler for each fatal signal still at its default disposition: an embedder's
   own handler is never replaced. Once per process. */
static void install_fatal_handlers(void)
{
    bool expected = false;
    if (!atomic_compare_exchange_strong(&handlers_installed, &expected, true))
        return;
    /* An alternate stack for the thread that starts the first watchdog (normally the loop
       thread), so that a plugin's stack overflow is reported too. */
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    stack_t old;
    bool alt = sigaltstack(NULL, &old) == 0 && (old.ss_flags & SS_DISABLE) && sigaltstack(&ss, NULL) == 0;
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++) {
        struct sigaction cur;
        if (sigaction(fatal_signals[i], NULL, &cur) != 0 || cur.sa_handler != SIG_DFL ||
            (cur.sa_flags & SA_SIGINFO))
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND | (alt ? SA_ONSTACK : 0);
        sigaction(fatal_signals[i], &sa, NULL);
    }
}

/* ---- quarantine across the firewalls of the process ------------------------------------- */

/* The plugins quarantined by any firewall (module handle and filter GUID). Written by watchdog
   threads under the lock, rarely; read at every new session, so the count is checked first
   without the lock. Never shrinks: a module is unloaded only with the firewalls using it. */
#define WD_MAX_QUARANTINED 64
static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint n_quarantined;
static struct {
    const void *dl;
    fwx_guid guid;
} quarantined[WD_MAX_QUARANTINED];

static void quarantine(fwx__plugin *p)
{
    atomic_store(&p->quarantined, true);
    pthread_mutex_lock(&quarantine_lock);
    unsigned n = atomic_load(&n_quarantined);
    bool known = false;
    for (unsigned i = 0; i < n && !known; i++)
        known = quarantined[i].dl == p->dl && fwx_guid_equal(&quarantined[i].guid, &p->guid);
    if (!known && n < WD_MAX_QUARANTINED) {
        quarantined[n].dl = p->dl;
        quarantined[n].guid = p->guid;
        atomic_store(&n_quarantined, n + 1);
    }
    pthread_mutex_unlock(&quarantine_lock);
}

bool fwx__plugin_quarantined(const fwx__plugin *p)
{
    if (atomic_load_explicit(&p->quarantined, memory_order_relaxed))
        return true;
    if (atomic_load_explicit(&n_quarantined, memory_order_acquire) == 0 || p->dl == NULL)
        return false;
    bool found = false;
    pthread_mutex_lock(&quarantine_lock);
    for (unsigned i = 0; i < n_quarantined && !found; i++)
        found = quarantined[i].dl == p->dl && fwx_guid_equal(&quarantined[i].guid, &p->guid);
    pthread_mutex_unlock(&quarantine_lock);
    return found;
}

/* ---- the thread ------------------------------------------------------------------------- */

static void *watchdog_main(void *arg)
{
    fwx__watchdog *w = arg;
    uint64_t last_seq = UINT64_MAX, since = now_ms();
    bool soft_done = false;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += w->tick_ms / 1000;
        until.tv_nsec += (long)(w->tick_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int rc = pthread_cond_timedwait(&w->cond, &w->lock, &until);
        if (w->stop)
            break;
        if (rc != 0 && rc != ETIMEDOUT)
            continue;
        uint64_t seq = atomic_load_explicit(&w->hb.seq, memory_order_acquire);
        uint32_t depth = atomic_load_explicit(&w->hb.depth, memory_order_relaxed);
        uint64_t t = now_ms();
        if (depth == 0 || seq != last_seq) {
            last_seq = seq;
            since = t;
            soft_done = false;
            continue;
        }
        uint64_t ran = t - since;
        fwx__plugin *p = atomic_load_explicit(&w->hb.plugin, memory_order_relaxed);
        uint32_t event = atomic_load_explicit(&w->hb.event, memory_order_relaxed);
        const char *name = p != NULL ? p->name : event == FWX__EVENT_DATA ? "(data filters of several plugins)" : "(core)";
        if (w->soft_ms != 0 && !soft_done && ran >= w->soft_ms) {
            soft_done = true;
            if (p != NULL)
                quarantine(p);
            /* [watchdog thread] the loop thread is inside the plugin: the sink is called from
               here (host.h says so of plugin_soft_limit_ms). */
            fwx__log_at(w->fw, FWX_LOG_ERROR, &(fwx__log_about){.plugin = p, .event = event, .no_fold = true},
                        "plugin \"%s\": %s has run for %llu ms, past the soft limit of %u ms; the plugin gets no "
                        "new sessions",
                        name, event_label(event), (unsigned long long)ran, w->soft_ms);
        }
        if (w->hard_ms != 0 && ran >= w->hard_ms) {
            line_buf l = {.n = 0};
            lb_str(&l, "fwx: plugin \"");
            lb_str(&l, name);
            lb_str(&l, "\": ");
            lb_str(&l, event_label(event));
            lb_str(&l, " has run for ");
            lb_uint(&l, ran);
            lb_str(&l, " ms, past the hard limit of ");
            lb_uint(&l, w->hard_ms);
            lb_str(&l, " ms; exiting with status ");
            lb_uint(&l, WD_EXIT_STATUS);
            lb_str(&l, " for the service manager to restart the gateway");
            lb_write(&l);
            _exit(WD_EXIT_STATUS);
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

fwx_result fwx__watchdog_start(fwx_firewall *fw)
{
    uint32_t soft = fw->opts.plugin_soft_limit_ms, hard = fw->opts.plugin_hard_limit_ms;
    if (soft == 0 && hard == 0)
        return FWX_S_OK;
    if (soft != 0 && hard != 0 && hard < soft)
        return FWX_E_INVALIDARG;
    fwx__watchdog *w = calloc(1, sizeof *w);
    if (w == NULL)
        return FWX_E_OUTOFMEMORY;
    w->fw = fw;
    w->soft_ms = soft;
    w->hard_ms = hard;
    uint32_t lim = soft != 0 ? soft : hard;
    w->tick_ms = lim / 4 < 5 ? 5 : lim / 4 > 250 ? 250 : lim / 4;
    w->slot = -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->lock, NULL);
    /* The thread must not take the process's signals (SIGTERM, SIGHUP belong to the loop). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, watchdog_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        fwx__fail(fw, "plugin watchdog: cannot start its thread: %s", strerror(rc));
        return FWX_E_OUTOFMEMORY;
    }
    for (int i = 0; i < WD_MAX_REGISTERED && w->slot < 0; i++) {
        fwx__heartbeat *expected = NULL;
        if (atomic_compare_exchange_strong(&registered[i], &expected, &w->hb))
            w->slot = i;
    }
    install_fatal_handlers();
    fw->watchdog = w;
    fw->heartbeat = &w->hb;
    fwx__log(fw, FWX_LOG_INFO, "plugin watchdog: soft limit %u ms, hard limit %u ms (0: none), checked every %u ms",
             soft, hard, w->tick_ms);
    return FWX_S_OK;
}

void fwx__watchdog_stop(fwx_firewall *fw)
{
    fwx__watchdog *w = fw->watchdog;
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    if (w->slot >= 0)
        atomic_store(&registered[w->slot], NULL);
    fw->heartbeat = NULL;
    fw->watchdog = NULL;
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
