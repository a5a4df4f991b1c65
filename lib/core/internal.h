/*
 * fwx - the core's shared object model: firewall, plugins, sessions, connections, grants.
 * Internal; not installed. Each part (lib/<part>/) implements the functions declared in its
 * block below.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_INTERNAL_H
#define FWX_INTERNAL_H

#include "util/util.h"
#include "policy/policy.h"
#include <uv.h>
#include <uthash.h>
#include <assert.h>

typedef struct fwx__plugin fwx__plugin;
typedef struct fwx__session fwx__session;
typedef struct fwx__conn fwx__conn;
typedef struct fwx__grant fwx__grant;
typedef struct fwx__action fwx__action;

/* An intrusive doubly-linked list node; lists are circular with a sentinel head. */
typedef struct fwx__list {
    struct fwx__list *prev, *next;
} fwx__list;

static inline void fwx__list_init(fwx__list *h) { h->prev = h->next = h; }
static inline bool fwx__list_empty(const fwx__list *h) { return h->next == h; }
static inline void fwx__list_insert_tail(fwx__list *h, fwx__list *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
static inline void fwx__list_remove(fwx__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
#define fwx__list_entry(node, type, member) fwx__container_of(node, type, member)

/* QueryInterface of a core object that is IUnknown and one interface `iid` (every interface
   opens with IUnknown's three methods, so `self` is called as one). */
static inline fwx_result fwx__query_one(void *self, const fwx_guid *iid, const fwx_guid *riid, void **ppv)
{
    if (ppv == NULL)
        return FWX_E_POINTER;
    if (riid != NULL && (fwx_guid_equal(riid, &IID_IUnknown) || fwx_guid_equal(riid, iid))) {
        IUnknown_AddRef((IUnknown *)self);
        *ppv = self;
        return FWX_S_OK;
    }
    *ppv = NULL;
    return FWX_E_NOINTERFACE;
}
static inline size_t fwx__list_count(const fwx__list *h)
{
    size_t n = 0;
    for (const fwx__list *i = h->next; i != h; i = i->next)
        n++;
    return n;
}
/*
 * Draining a list (ending every session, grant, connection in it) is bounded by its length
 * when it starts: each step takes the first entry off and adds none. The loops run at most that
 * many steps and then assert the invariant, so a step that breaks it fails a debug build at
 * once and cannot spin in a release one:
 *     for (size_t i = 0, n = fwx__list_count(h); i < n && !fwx__list_empty(h); i++) end(first);
 *     fwx__list_assert_drained(h);
 */
#define fwx__list_assert_drained(h) assert(fwx__list_empty(h) && "a drain step left or added an entry")

/* ---- firewall (lib/core) ---- */

/* Key of the port table: a gateway port is unique per protocol, whatever the address. */
typedef struct fwx__port_key {
    int32_t protocol;
    uint32_t port;
} fwx__port_key;

/* Key of the permission table: protocol and target endpoint. */
typedef struct fwx__perm_key {
    int32_t protocol;
    fwx__sa_key target;
} fwx__perm_key;

/* A bucket of permissions with one key (several sessions may allow the same target). */
typedef struct fwx__perm_bucket {
    fwx__perm_key key;
    fwx__list grants;
    UT_hash_handle hh;
} fwx__perm_bucket;

/* A policy rule's name as connections keep it (lib/core/connection.c): one copy per name for
   all the connections it allowed, counted, since a policy reload frees the policy's own text.
   Was a char[64] in every connection (issue 12, memory per idle connection). */
typedef struct fwx__name {
    UT_hash_handle hh; /* fwx_firewall.names, on text */
    uint32_t refs;     /* connections holding it; freed at 0 */
    char text[];
} fwx__name;

/* Repeated log lines (lib/core/log.c): a line whose key (its format, or its text) came more
   than FWX__LOG_FOLD_BURST times in the current second is folded into one "repeated K times"
   line. A few keys at a time: a key that finds no slot takes the oldest one. */
#define FWX__LOG_FOLD_SLOTS 16
#define FWX__LOG_FOLD_BURST 10 /* fwx_firewall_options.log_repeat_limit's default */
#define FWX__LOG_FOLD_WINDOW_MS 1000
typedef struct fwx__log_fold {
    uint64_t key;       /* 0: free */
    uint64_t window_ms; /* when the current second began */
    uint32_t count;     /* lines with this key in the current second */
    uint32_t folded;    /* of those, not emitted */
    int level;
    char sample[120];   /* the first line folded, for the summary */
} fwx__log_fold;

/* Connection time limits (lib/core/timeouts.c): a wheel of one-second slots. A connection sits
   in the slot of the second its nearest deadline falls in, as computed when it was placed;
   data only records the loop's time on the connection, so a busy connection is looked at once
   per idle period (then placed again), never per read. */
#define FWX__TW_SLOTS 64
typedef struct fwx__timeouts {
    uint32_t idle_ms, handshake_ms; /* the firewall's defaults (fwx_firewall_set_timeouts) */
    uv_timer_t tick;                /* 1 s, repeating while a connection is timed */
    bool tick_on;
    fwx__list slot[FWX__TW_SLOTS];  /* fwx__conn.to_node */
    uint64_t done_s;                /* every slot up to this second has been looked at */
    uint32_t n;                     /* timed connections */
    uint64_t n_idle, n_handshake;   /* connections ended by each limit */
    void (*then)(struct fwx_firewall *fw); /* at close, once the tick has closed */
} fwx__timeouts;

struct fwx_firewall {
    IFWXFirewall iface;
    atomic_uint refs;
    uv_loop_t *loop;
    fwx_firewall_options opts;
    char *name;
    struct sockaddr_storage *local; /* canonical gateway addresses */
    size_t n_local;
    fwx_policy *policy;
    char last_error[512];
    bool closing;
    /* The connection whose data filters a user-mode completion is being delivered to, or NULL:
       what a filter asks for from there (RedirectConnections) is for that connection. */
    const struct fwx__conn *io_conn;

    fwx__list plugins;  /* fwx__plugin.node, load order */
    fwx__list sessions; /* fwx__session.node */
    fwx__session *nat_by_ip; /* uthash on fwx__session.ip_key */

    fwx__grant *ports;           /* uthash on fwx__grant.port_key: bindings, redirects, client binds */
    fwx__perm_bucket *perms;     /* uthash on fwx__perm_key */
    fwx__list expiry;            /* fwx__grant.expiry_node, by expires (ascending) */
    fwx__list address_factories; /* fwx__grant.bucket_node: ADDRESS_BASED data-filter factories */
    uv_timer_t timer;
    uint64_t next_id;

    uint32_t n_sessions, n_connections, n_permissions, n_ports, n_factories;

    const fwx_backend *backend;
    void *backend_state;
    /* Grants the core let go of but the backend failed to remove: asked again before each later
       grant change (lib/core/backend_registry.c), forgotten when the backend closes. */
    uint64_t *stuck_grants;
    size_t n_stuck_grants, cap_stuck_grants;
    /* The grants the backend holds or is being handed (installed or adding), by fwx_grant::id:
       how fwx_backend_grant_in_kernel() finds the core's grant behind a backend's pointer in
       O(1) (lib/core/backend_registry.c). */
    struct fwx__grant *backend_grants; /* uthash on pub.id, handle id_hh */
    /* The plugin on whose behalf the core runs now (set around every call into a filter), so
       that what a filter asks for is owned by it. Per firewall: firewalls on other threads run
       other filters at the same time. */
    fwx__plugin *current_plugin;
    uint32_t current_event; /* the event of that call, 0 for a non-event method */
    struct fwx__heartbeat *heartbeat; /* the watchdog's (lib/core/watchdog.c), NULL: none */
    struct fwx__watchdog *watchdog;

    fwx_firewall_close_cb close_cb;
    void *close_arg;
    bool timer_closed;
    fwx_listen_spec *published; /* what the backend listens on for publishing rules */
    size_t n_published;
    struct fwx_redirect_handle *redirect_handles; /* uthash on the provider GUID (lib/core/redirect*.c) */
    struct fwx_redirect_handle *redirect_identity; /* the firewall's own (fwx_firewall_redirect_identity) */
    struct fwx__ifaddrs *sys; /* interface addresses (lib/core/ifaddrs.c), NULL: not tracked */
    fwx_log_sink_fn log_sink; /* fwx_firewall_set_log_sink (lib/core/log.c), NULL: opts.log */
    void *log_sink_arg;
    bool host_relay; /* fwx_firewall_set_host_relay: the host runs data filters (lib/core/datapath.c) */
    uint64_t dgrams_dropped; /* fwx_firewall_datagrams_dropped (lib/core/datapath.c) */
    fwx__log_fold log_fold[FWX__LOG_FOLD_SLOTS]; /* loop thread only */
    /* Operator tools (lib/core/events.c): the event sink, plugin timing. */
    fwx_event_fn event_sink;
    void *event_sink_arg;
    bool time_plugins;
    uint64_t plugin_call_start; /* uv_hrtime() at the outermost plugin call's entry */
    fwx__timeouts to; /* lib/core/timeouts.c */
    fwx__name *names; /* rule names held by connections (fwx__conn.rule), loop thread only */
    fwx__list timers; /* plugins' IFWXTimer objects (lib/core/timer.c) */
};

void fwx__log(fwx_firewall *fw, fwx_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* True when a line at `level` reaches a sink. Atomic: the watchdog's thread asks it while a
   plugin overruns. */
static inline bool fwx__log_enabled(const fwx_firewall *fw, fwx_log_level level)
{
    return fw == NULL || (unsigned)level <= (unsigned)__atomic_load_n(&fw->opts.log_level, __ATOMIC_RELAXED);
}
/* The level is tested before the arguments are evaluated: lines name addresses
   (fwx__sa_fmt: inet_ntop + snprintf), and at the default level "warn" formatting those of
   the info lines of every connection and grant was ~40 % of the user-mode relay's own
   instructions per connection and ~30 % of an FTP PASV's (bench/README.md, issue 12). fw and
   level are evaluated once each, into locals (a statement, not an expression); the functions
   are defined as (fwx__log) and (fwx__log_at) so that the macros do not apply there.
   fwx__log_at: core/log.h. */
#define FWX__LOG_IF(fn, fw, level, ...)                                                           \
    do {                                                                                          \
        fwx_firewall *fwx__log_fw_ = (fw);                                                        \
        fwx_log_level fwx__log_lv_ = (level);                                                     \
        if (fwx__log_enabled(fwx__log_fw_, fwx__log_lv_))                                         \
            (fn)(fwx__log_fw_, fwx__log_lv_, __VA_ARGS__);                                        \
    } while (0)
#define fwx__log(fw, level, ...) FWX__LOG_IF(fwx__log, fw, level, __VA_ARGS__)
/* Logs and keeps the text in fw->last_error. */
void fwx__fail(fwx_firewall *fw, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
typedef struct fwx__ifaddrs fwx__ifaddrs;
/* True when addr is an address of one of the host's (non-loopback) interfaces, as of now;
   false when fwx_firewall_track_local_addresses() was not called. (lib/core/ifaddrs.c) */
bool fwx__ifaddrs_contains(const fwx_firewall *fw, const struct sockaddr *addr);
void fwx__ifaddrs_free(fwx_firewall *fw);
/* True when addr (canonical) is one of the gateway's own addresses or loopback. */
bool fwx__firewall_is_local(const fwx_firewall *fw, const struct sockaddr *addr);
/* Why no connection may be steered to addr (the gateway itself, loopback unless
   loopback_hosts, any, group addresses), or NULL. Ports are the caller's business. */
const char *fwx__firewall_forbidden_host(const fwx_firewall *fw, const struct sockaddr *addr);
uint64_t fwx__firewall_new_id(fwx_firewall *fw);
static inline uint32_t fwx__firewall_timeout_ms(const fwx_firewall *fw) { return fw->opts.timeout_ms; }
/* A connection object was freed; frees a closed firewall with the last one. */
void fwx__firewall_connection_gone(fwx_firewall *fw);
/* Expiry list: (re)arms the one timer at the earliest deadline. */
void fwx__expiry_add(fwx_firewall *fw, fwx__grant *g, uint64_t expires);
void fwx__expiry_remove(fwx_firewall *fw, fwx__grant *g);

/* IFWXFirewall::QueryInterface(IID_IFWXTimer): a new timer (+1) for the plugin whose call
   runs (lib/core/timer.c). fwx__timers_close lets go of those still held at the close. */
fwx_result fwx__timer_new(fwx_firewall *fw, IFWXTimer **out);
void fwx__timers_close(fwx_firewall *fw);

/* Publishing rules -> backend listeners (lib/core/publish.c). */
fwx_result fwx__publish_sync(fwx_firewall *fw);
void fwx__publish_forget(fwx_firewall *fw);

/* ---- backend (lib/core/backend_registry.c) ---- */
fwx_result fwx__backend_grant_add(fwx_firewall *fw, fwx__grant *g);
/* Who may use g (fwx_grant::sources), by the rules fwx_firewall_admit applies: a new array in
   *out (NULL when none), its length in *n; FWX_E_OUTOFMEMORY. */
fwx_result fwx__grant_sources(const fwx__grant *g, fwx_grant_source **out, uint32_t *n, uint32_t *flags);
void fwx__backend_grant_remove(fwx_firewall *fw, fwx__grant *g);
/* The same for several grants in one step (a session's end: backend version 3). */
void fwx__backend_grant_remove_many(fwx_firewall *fw, fwx__grant **gs, size_t n);
/* Hands c to the backend. A connection with data filters that nothing can run (no backend
   relays, and the host did not say it does) is refused: FWX_E_NOT_SUPPORTED, logged, c
   terminated. A backend's failure: FWX_E_BACKEND, c terminated. */
fwx_result fwx__backend_relay(fwx_firewall *fw, fwx__conn *c);
/* Whether fw's backend (behind any wrapper) carries kernel-mode primary connections in the
   kernel: "nft" only; the "proxy" backend and a host relay every byte in user space. */
bool fwx__backend_kernel_carries(fwx_firewall *fw);
void fwx__backend_kill(fwx_firewall *fw, fwx__conn *c);
void fwx__backend_close(fwx_firewall *fw);
/* Tells a version-2 backend that the policy changed (or, after open, what it is). */
void fwx__backend_policy_changed(fwx_firewall *fw);

/* ---- plugins (lib/core) ---- */
struct fwx__plugin {
    fwx_firewall *fw;
    uint64_t index;
    fwx__list node;
    char *path;
    void *dl;
    const fwx_plugin_entry *entry;
    fwx_guid guid;
    char *name;
    IFWXFilter *filter;
    uint32_t hooks;    /* FilterInit's events, masked by the manifest */
    bool unloaded;     /* FilterShutdown done; no more events */
    /* Set by the watchdog (another thread) when a call overran the soft limit: the plugin
       joins no new session. */
    atomic_bool quarantined;
    /* fwx_firewall_time_plugins (lib/core/events.c): outermost calls, loop thread only. */
    uint64_t time_calls, time_ns;
    uint64_t time_buckets[FWX_PLUGIN_TIME_BUCKETS];
};

/* ---- plugin calls and the watchdog (lib/core/watchdog.c) ---- */

/* The heartbeat the loop thread gives around every call into a plugin. One writer (the loop
   thread), one reader (the watchdog thread): relaxed stores, no read-modify-write. */
typedef struct fwx__heartbeat {
    _Atomic uint64_t seq;   /* bumped at every enter and leave */
    _Atomic uint32_t depth; /* calls into plugins in progress (they nest) */
    _Atomic(fwx__plugin *) plugin;
    _Atomic uint32_t event;
} fwx__heartbeat;

/* The "event" of a data filter's callback (a completion the user-mode pump delivers), for the
   watchdog's lines: not an SDK event type. */
#define FWX__EVENT_DATA 0x80000000u

/* What a call replaced, for fwx__plugin_leave. */
typedef struct fwx__plugin_call {
    fwx__plugin *plugin;
    uint32_t event;
} fwx__plugin_call;

/* Marks the loop thread as running plugin p for event (0: not an event) until the matching
   fwx__plugin_leave; with a watchdog, that is its heartbeat. */
static inline void fwx__plugin_enter(fwx_firewall *fw, fwx__plugin *p, uint32_t event, fwx__plugin_call *saved)
{
    saved->plugin = fw->current_plugin;
    saved->event = fw->current_event;
    if (fw->time_plugins && saved->plugin == NULL)
        fw->plugin_call_start = uv_hrtime();
    fw->current_plugin = p;
    fw->current_event = event;
    fwx__heartbeat *hb = fw->heartbeat;
    if (hb != NULL) {
        atomic_store_explicit(&hb->plugin, p, memory_order_relaxed);
        atomic_store_explicit(&hb->event, event, memory_order_relaxed);
        atomic_store_explicit(&hb->depth, atomic_load_explicit(&hb->depth, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        atomic_store_explicit(&hb->seq, atomic_load_explicit(&hb->seq, memory_order_relaxed) + 1,
                              memory_order_release);
    }
}

/* Adds the outermost call that began at fw->plugin_call_start to p's timing (events.c). */
void fwx__plugin_timed(fwx_firewall *fw, fwx__plugin *p);

static inline void fwx__plugin_leave(fwx_firewall *fw, const fwx__plugin_call *saved)
{
    if (fw->time_plugins && saved->plugin == NULL && fw->current_plugin != NULL)
        fwx__plugin_timed(fw, fw->current_plugin);
    fw->current_plugin = saved->plugin;
    fw->current_event = saved->event;
    fwx__heartbeat *hb = fw->heartbeat;
    if (hb != NULL) {
        atomic_store_explicit(&hb->plugin, saved->plugin, memory_order_relaxed);
        atomic_store_explicit(&hb->event, saved->event, memory_order_relaxed);
        atomic_store_explicit(&hb->depth, atomic_load_explicit(&hb->depth, memory_order_relaxed) - 1,
                              memory_order_relaxed);
        atomic_store_explicit(&hb->seq, atomic_load_explicit(&hb->seq, memory_order_relaxed) + 1,
                              memory_order_release);
    }
}

/* Whether plugin p is quarantined: by its own firewall's watchdog, or by another firewall's
   of this process for the same plugin code (the same module and filter GUID). A host that runs
   one firewall per event loop loads each plugin once per loop; the code that overran on one
   loop is what the others run. [any-thread] */
bool fwx__plugin_quarantined(const fwx__plugin *p);

/* Starts the watchdog thread when opts set a limit (0 and nothing when not); stops it. */
fwx_result fwx__watchdog_start(fwx_firewall *fw);
void fwx__watchdog_stop(fwx_firewall *fw);

void fwx__plugins_close_all(fwx_firewall *fw);
/* deinit and dlclose: only when nothing can call into plugin code any more. */
void fwx__plugins_free_all(fwx_firewall *fw);
fwx__plugin *fwx__plugin_find(fwx_firewall *fw, const fwx_guid *guid);
/* The loaded plugin that provides a filter a protocol binds, or NULL. */
fwx__plugin *fwx__plugin_for_filter(fwx_firewall *fw, const fwx__filter_ref *f);
/* The first filter bound to proto that no loaded plugin provides, or NULL: connections of
   such a protocol are refused, never relayed unfiltered (lib/core/firewall.c). */
const fwx__filter_ref *fwx__protocol_missing_filter(fwx_firewall *fw, const fwx__protocol *proto);

/* ---- sessions (lib/core) ---- */

/* One filter's attachment to one session. sf is NULL when the filter declined the session. */
typedef struct fwx__attachment {
    fwx__plugin *plugin;
    IFWXSessionFilter *sf;
    uint32_t events;
    uint32_t held;  /* references to the session the filter took in AttachToSession */
    bool detached;
} fwx__attachment;

struct fwx__session {
    IFWXSession iface;
    atomic_uint refs;
    /* Of refs, those the core's own objects hold: one per connection object, and those its
       session filters took when attached. A private session ends when refs comes down to
       these (its last reference from outside the core went). */
    atomic_uint core_refs;
    fwx_firewall *fw;
    uint64_t id;
    uint64_t created_ms;
    fwx__list node;
    uint32_t source; /* fwxSourceNAT / fwxSourceWSP */
    uint32_t flags;  /* FWX_SESSION_* */
    fwx__sa client;
    fwx__sa gw_internal;
    bool has_gw_internal;
    char *user;
    bool ended;
    fwx__sa_key ip_key; /* the client's IP, no port */
    bool in_nat_table;
    UT_hash_handle hh;

    /* Live connections, in two lists: what asks about a session's primary connections (its
       peers, its published servers, its newest control connection: asked on every PORT and
       PASV) never walks its data connections, which an FTP session gathers by the thousand
       while their conntrack entries wait out TIME_WAIT (bench/README.md, issue 13, part 9).
       Every live connection: fwx__session_conn_first / _next. */
    fwx__list conns;       /* fwx__conn.node: primary connections (client binds included) */
    fwx__list secondaries; /* fwx__conn.node: those made FWX_CONNECTION_SECONDARY at birth */
    fwx__list grants; /* fwx__grant.session_node */
    /* Its own data-filter factories (fwx__grant.factory_node), also in grants, and how many:
       asked on every permission and connection, so that a session with none (nearly all)
       answers at once, and one with some walks those only, not every grant. */
    fwx__list factories;
    uint32_t n_factories;
    /* fwx__conn.node: client binds ended while their objects are still held; until released,
       RetroactiveAllowBind answers FWX_E_TERMINATING for them (T11, doc/sdk-rules.md) */
    fwx__list closing_binds;
    fwx__attachment *att;
    size_t n_att;
    uint32_t n_permissions, n_ports;
    bool warned_perm_cap; /* the cap's warn line is said once a session (engine.c) */
    /* fwx__timeouts_touch: when the session's primaries of this protocol were last touched */
    uint64_t touched_ms;
    fwx_guid touched_guid;
    /* Its connections in the timeout wheel that are not secondaries: with none, a secondary's
       bytes have no primary to keep alive and fwx__timeouts_touch walks nothing (a client of
       ALLOW_MULTIPLE permissions may hold tens of thousands of kernel flows and no primary). */
    uint32_t timed_primaries;
};

static inline fwx__session *fwx__session_from(IFWXSession *s)
{
    return fwx__container_of(s, fwx__session, iface);
}
/* True when s is one of ours (not a filter's own implementation). */
bool fwx__session_is_ours(IFWXSession *s);
fwx__session *fwx__session_new(fwx_firewall *fw, uint32_t source, const struct sockaddr *client,
                               const struct sockaddr *gw_internal, const char *user, uint32_t flags);
void fwx__session_end(fwx__session *s);
/* Detaches (and forgets) the attachments of one plugin in every session. */
void fwx__sessions_detach_plugin(fwx_firewall *fw, fwx__plugin *p);
/* Attaches a filter to the session if not yet: returns the attachment or NULL with *hr set. */
fwx__attachment *fwx__session_attach(fwx__session *s, fwx__plugin *p, fwx_result *hr);

/* Raises an event about connection c to every filter that hooks it. Returns FWX_S_OK or the
   failure that fails the request; c->denied says whether a filter denied it. */
fwx_result fwx__dispatch(fwx__session *s, fwx__conn *c, FwxFirewallEvent *ev, const fwx_guid *protocol_guid,
                         bool secondary);
/* Whether any loaded filter would receive this event (T9: then the kernel cannot carry it). */
bool fwx__event_hooked(fwx__session *s, uint32_t event_type, const fwx_guid *protocol_guid, bool secondary);
/* The external peers of the session's open primary connections: is addr one of them? The
   connections that count are those fwx__conn_counts_as_peer says (the same rule hands a
   backend a bound port's sources: fwx__grant_sources). */
bool fwx__session_is_peer(fwx__session *s, const struct sockaddr *addr);
/* Is addr the session's client, or a published server of one of its open connections? */
bool fwx__session_is_own_host(fwx__session *s, const struct sockaddr *addr);
/* Is addr a published server of one of the session's open connections? */
bool fwx__session_is_server(fwx__session *s, const struct sockaddr *addr);
/* True when every open primary connection of the session goes to a published server. */
bool fwx__session_published_only(fwx__session *s);
/* The newest primary connection's external peer, or NULL. */
const struct sockaddr *fwx__session_last_peer(fwx__session *s);

/* ---- connections (lib/core) ---- */

typedef struct fwx__dfentry {
    IFWXDataFilter *df;
    FwxDataFilterPriorityClass prio;
    IUnknown *ctx;
    bool has_dest;                 /* AttachDataFilterWithDestination: only this UDP destination */
    fwx__sa dest;
    fwx__plugin *plugin; /* the plugin that attached it, NULL for the host: owner of its grants */
} fwx__dfentry;

/* What few connections use, in one allocation made the first time one of them is set
   (fwx__conn_ext_get): a plain relayed connection has none, and it saves 48 bytes of each (issue
   12, part 4). Freed with the connection. */
typedef struct fwx__conn_ext {
    fwx__grant *grant;          /* BindForClient / client bind: the port this connection owns */
    IFWXIpFilter *ipfilter;
    fwx_redirect_record *redirect; /* +1, or NULL: released when the object is freed */
    char *redirect_file;        /* its outbound flow's registry file, removed when it ends */
    struct fwx_pump *host_pump; /* fwx_connection_relay: the host's relay, aborted when c ends */
    /* The plugin a data path names for completions to this connection's filters (the
       watchdog, fwx_connection_data_call): the one plugin of the filters attached so far, NULL
       once they are several plugins' (or the host's). Kept after they detach: completions
       still reach their code. */
    fwx__plugin *df_owner;
    uint32_t dfs_seen; /* data filters ever attached */
} fwx__conn_ext;

struct fwx__conn {
    /* Ordered to leave no holes, flags last as bits: one is kept per relayed connection
       (issue 12, memory per idle connection; 1,000 bytes before, 392 in part 3, 344 now with
       the rarely used fields in fwx__conn_ext). */
    IFWXConnection iface;
    IFWXUdpDestination udpdest; /* handed out in fwx_Udp_Destination events; shares refs */
    fwx__session *session; /* holds a reference on session->iface */
    fwx__list node;        /* in session->conns or ->secondaries while live */
    uint64_t id;
    atomic_uint refs;
    int32_t protocol;
    uint32_t event;  /* the event that created it */
    uint32_t flags;  /* FWX_CONNECTION_* */
    fwx_guid protocol_guid;
    fwx__sa ext_peer, ext_local, client; /* has_ext_peer, has_ext_local say which are known */
    fwx__sa server; /* publishing: the internal server relayed to (has_server) */
    /* The gateway's own address on the internal side (for a published server's connection:
       the local name of the upstream socket to the server), learnt when the backend connects
       (has_int_local). */
    fwx__sa int_local;
    uint32_t in_event; /* the event whose handler runs now, 0 outside handlers */
    fwx__name *rule; /* the policy rule that allowed it, NULL for none (fwx__conn_rule), for logs */
    fwx__dfentry *dfs;
    size_t n_dfs;
    fwx__conn_ext *ext; /* NULL until one of its fields is set; read them through fwx__conn_x */
    uint64_t bytes_sent;        /* IncrementBytesSentCounter */
    uint64_t bytes_in, bytes_out;
    uint64_t created_ms;
    /* Time limits (lib/core/timeouts.c). */
    fwx__list to_node;        /* in a slot of fw->to while timed */
    uint64_t to_check_s;      /* the second whose slot it is in */
    uint64_t last_active_ms;  /* loop time of its last byte (or of a secondary's, see touch) */
    uint64_t touched_ms;      /* a secondary: when it last refreshed its primaries */
    uint32_t idle_ms, handshake_ms;
    uint32_t buffer_size;
    bool has_ext_peer : 1, has_ext_local : 1, has_server : 1, has_int_local : 1;
    bool denied : 1;
    bool client_pending : 1;  /* BindForClient with an all-zero client address */
    bool client_set : 1;      /* SetClientAddress was called */
    bool armed : 1;           /* its limits were set (fwx__timeouts_arm) */
    bool timed : 1;           /* in the wheel */
    bool timed_primary : 1;   /* ... and counted in session->timed_primaries */
    bool established : 1;     /* both sides connected (the pump started) */
    bool hs_pending : 1;      /* a filter holds the handshake open (IFWXConnection3) */
};

/* Kept per relayed connection, so its size is bench/README.md's figure (issue 12, part 4): a
   field added here costs every idle connection; put a rarely used one in fwx__conn_ext. */
_Static_assert(sizeof(fwx__conn) <= 344, "fwx__conn grew: see issue 12 in bench/README.md");

/* c's rarely used fields for reading: all zero while it has none. */
static inline const fwx__conn_ext *fwx__conn_x(const fwx__conn *c)
{
    static const fwx__conn_ext none;
    return c->ext != NULL ? c->ext : &none;
}
/* c's rarely used fields for writing, allocated the first time; NULL: out of memory. */
fwx__conn_ext *fwx__conn_ext_get(fwx__conn *c);

static inline fwx__conn *fwx__conn_from(IFWXConnection *c) { return fwx__container_of(c, fwx__conn, iface); }
/* The name of the rule that allowed c, "" for none. */
static inline const char *fwx__conn_rule(const fwx__conn *c) { return c->rule != NULL ? c->rule->text : ""; }
bool fwx__conn_is_ours(IFWXConnection *c);
/* A connection whose external peer may take the session's bound ports (only the session's
   own peers may: a bounce through a bound port is refused): an open primary one (not a
   secondary, not a listening object) with a known peer. fwx__session_is_peer and the sources
   the core hands a backend (fwx__grant_sources) both ask this. */
static inline bool fwx__conn_counts_as_peer(const fwx__conn *c)
{
    return c->has_ext_peer && !(c->flags & (FWX_CONNECTION_SECONDARY | FWX_CONNECTION_LISTENING));
}
/* A connection whose published server counts as one of the session's own hosts (with its
   client: fwx__session_is_own_host, and fwx__grant_sources for permissions and redirects). */
static inline bool fwx__conn_has_own_server(const fwx__conn *c) { return c->has_server; }
/* A new connection in session s (+1 for the caller; the session's list holds its own), with
   its FWX_CONNECTION_* flags: FWX_CONNECTION_SECONDARY decides its list, once. */
fwx__conn *fwx__conn_new(fwx__session *s, int32_t protocol, uint32_t event, const fwx_guid *protocol_guid,
                         uint32_t flags);
/* Every live connection of s, primaries first:
   for (fwx__conn *c = fwx__session_conn_first(s); c != NULL; c = fwx__session_conn_next(c)) */
static inline fwx__conn *fwx__session_conn_at(fwx__session *s, fwx__list *n)
{
    if (n == &s->conns)
        n = s->secondaries.next;
    return n == &s->secondaries ? NULL : fwx__list_entry(n, fwx__conn, node);
}
static inline fwx__conn *fwx__session_conn_first(fwx__session *s) { return fwx__session_conn_at(s, s->conns.next); }
static inline fwx__conn *fwx__session_conn_next(const fwx__conn *c)
{
    return fwx__session_conn_at(c->session, c->node.next);
}
/* Ends a connection: ConnectionTerminating, data filters detached, grant withdrawn. Idempotent. */
void fwx__conn_terminate(fwx__conn *c);
/* Raises event `type` on c, applies factories, decides kernel or user mode (T9) and hands c
   to the backend. On refusal c is terminated and the refusal code returned. */
fwx_result fwx__conn_start(fwx__conn *c, uint32_t type, FwxFilterAccess access, bool secondary, bool no_kernel);
/* How a started connection's bytes travel, for operators' log lines: "filtered" (a data filter
   reads them in user space), "kernel-carried" or "relayed, no data filter" (fwx or the host
   copies them). @p in_kernel: it came through a grant the backend put in the kernel. Not the
   SDK's FWX_CONNECTION_KERNEL_MODE, which only says that no user-mode filter needs the data. */
const char *fwx__conn_path_name(fwx__conn *c, bool in_kernel);
/* The backend's upstream socket of c is connected from `local` (its getsockname): for a
   connection into a published server (and the secondaries admitted on a bound port) that is the
   gateway's internal-side address, otherwise its external one (kept if already known). */
void fwx__conn_set_upstream_local(IFWXConnection *conn, const struct sockaddr *local);
/* Attaches a data filter (AddRefs df and ctx) in priority order; the connection goes user mode. */
fwx_result fwx__conn_attach_df(fwx__conn *c, IFWXDataFilter *df, FwxDataFilterPriorityClass prio, IUnknown *ctx);
/* The same, for one UDP destination only (AttachDataFilterWithDestination); dest NULL: all. */
fwx_result fwx__conn_attach_df_to(fwx__conn *c, IFWXDataFilter *df, FwxDataFilterPriorityClass prio, IUnknown *ctx,
                                  const struct sockaddr_storage *dest);

/* ---- time limits (lib/core/timeouts.c) ---- */
/* At fwx_firewall_new: the defaults, the wheel, its (unreferenced) timer. */
void fwx__timeouts_init(fwx_firewall *fw);
/* At close: closes the timer, then calls then(fw) from its close callback. */
void fwx__timeouts_close(fwx_firewall *fw, void (*then)(fwx_firewall *fw));
/* c has started: arms its protocol's limits if fwx's user-mode path must carry it (TCP, not
   listening, not kernel mode, a backend); others are armed when the pump starts. */
void fwx__timeouts_arm(fwx__conn *c);
/* c is ending: out of the wheel. */
void fwx__timeouts_forget(fwx__conn *c);
/* Bytes moved on c (fwx_connection_count_bytes): records the loop's time, no syscall. */
void fwx__timeouts_touch(fwx__conn *c);
/* Both sides of c are connected (the user-mode pump started): arms it if not yet. */
void fwx__timeouts_established(fwx__conn *c);
/* IFWXConnection3::SetHandshakePending. */
void fwx__timeouts_hold_handshake(fwx__conn *c, bool pending);

/* ---- the data path's calls and host relays (lib/core/datapath.c) ---- */
/* c is ending: the host's relay of it (fwx_connection_relay) is aborted. */
void fwx__relay_kill(fwx__conn *c);

/* ---- redirect tracking (lib/core/redirect*.c) ---- */

/* The firewall is being freed: destroys the handles its owners left behind (their contexts are
   freed while plugin code is still mapped). */
void fwx__redirect_firewall_free(fwx_firewall *fw);
/* A secondary connection the core admitted through a redirect port, or a bound port in proxy
   mode, was redirected by this firewall: its record (original destination = the gateway port it
   reached, one hop of the firewall's identity to `target`). Out of memory: no record. */
void fwx__redirect_admitted(fwx__conn *c, const struct sockaddr *reached, const struct sockaddr *target);

/* The registry (lib/core/redirect_registry.c, doc/redirect.md). */
#define FWX__REG_PATH_MAX 512
/* SO_MARK of a redirected flow's outbound socket: this bit, and the slots it has passed. */
#define FWX__REDIRECT_MARK FWX_REDIRECT_MARK /* the public values (fwx/redirect.h) */
#define FWX__REDIRECT_SLOT_MARK(slots) FWX_REDIRECT_SLOT_MARK(slots)
/* FWX_REDIRECT_DIR or /run/fwx/redirect. */
const char *fwx__registry_dir(void);
/* Writes rec for the flow from src (an IPv4 address and port, both set) to dst; `path` receives
   the file's name. 0 or -1. */
int fwx__registry_put(const struct sockaddr *src, const struct sockaddr *dst, const fwx_redirect_record *rec,
                      uint32_t slots, char *path, size_t cap);
/* The record a previous hop on this host wrote for the flow from src to dst, and the slots it
   passed; NULL if none, if the file is malformed, or if it names another source address (an
   unspecified src address matches any: a lookup by port only). */
fwx_redirect_record *fwx__registry_get(const struct sockaddr *src, const struct sockaddr *dst, uint32_t *slots);
/* Removes files whose writer is no longer running. */
void fwx__registry_sweep(void);
/* The connection has ended: its registry file goes. */
void fwx__registry_unlink(fwx__conn *c);

/* ---- secondary connections (lib/core/secondary.c) ---- */

typedef enum fwx__grant_type {
    FWX__G_PERMISSION = FWX_GRANT_PERMISSION,
    FWX__G_BINDING = FWX_GRANT_BINDING,
    FWX__G_REDIRECT = FWX_GRANT_REDIRECT,
    FWX__G_CLIENT_BIND = FWX_GRANT_CLIENT_BIND,
    FWX__G_FACTORY = 100, /* SetDataFilterFactory: not a backend grant */
} fwx__grant_type;

struct fwx__grant {
    fwx_grant pub;          /* what the backend sees */
    fwx__grant_type type;
    fwx__session *session;  /* borrowed: every grant is withdrawn before its session ends */
    fwx__plugin *owner;     /* the plugin that asked, NULL if unknown */
    IFWXSessionFilter *sf;  /* +1, for fwx_EstablishedConnection */
    IUnknown *ctx;          /* +1 */
    fwx_guid protocol_guid;
    IFWXIpFilter *ipfilter; /* +1, restricts who may connect */
    fwx__conn *conn;        /* BindForClient / client bind: the owning connection (borrowed) */
    fwx__sa only_source; /* FWX_FLAG_REPLY_FROM_PEER: who alone may use it (port 0) */
    fwx__action *action;    /* borrowed: the action object, if one was handed out */
    bool installed;         /* given to the backend */
    bool announced;         /* FWX_EVENT_PERMISSION_ADDED sent (lib/core/events.c) */
    bool approved;          /* client bind: RetroactiveAllowBind done */
    bool in_kernel;         /* the backend said the kernel carries it (fwx_backend_grant_in_kernel) */
    bool adding;            /* inside the backend's grant_add (what fwx_backend_grant_in_kernel may mark) */
    bool backend_held;      /* in fw->backend_grants */
    uint32_t uses;
    uint64_t expires;       /* loop ms, 0 = never */
    uint64_t created_ms;
    /* factories */
    uint32_t event_type;
    IClassFactory *factory; /* +1 */
    FwxDataFilterPriorityClass prio;

    fwx__list session_node;
    fwx__list factory_node; /* factories: in their session's factories */
    fwx__list expiry_node;
    fwx__list bucket_node;  /* permissions: in a fwx__perm_bucket; address-based factories: in
                               fw->address_factories */
    fwx__perm_bucket *bucket;
    fwx__port_key port_key; /* bindings, redirects, client binds */
    bool in_ports;
    UT_hash_handle hh;
    UT_hash_handle id_hh;   /* fw->backend_grants */
};

const char *fwx__grant_type_name(fwx__grant_type t);
/* Withdraws a grant: tables, backend, timer, action. Frees it. */
void fwx__grant_remove(fwx__grant *g, const char *why);
/* Called by the timer for a grant whose time is up. */
void fwx__grant_expired(fwx__grant *g);
/* Registers a client's own bind (fwx_Bind_* primary connection) as an unapproved grant. */
fwx_result fwx__client_bind_register(fwx__conn *c);
/* Applies the session's data-filter factories that match (event, address) to c. */
fwx_result fwx__apply_factories(fwx__session *s, fwx__conn *c, uint32_t event, const struct sockaddr *addr);

/* IFWXSession methods implemented in lib/core/secondary.c. */
fwx_result fwx__AllowFutureConnect(IFWXSession *This, const struct sockaddr *Address, uint32_t AddressLength,
                                   const struct sockaddr *ProxyExternalAddress, uint32_t ProxyExternalAddressLength,
                                   int32_t Protocol, uint32_t dwFlags, const fwx_guid *ProtocolGuid,
                                   IFWXSessionFilter *pSessionFilter, IUnknown *punkContext,
                                   IFWXConnection *pConnection, IFWXFirewallAction **ppFirewallAction);
fwx_result fwx__BindForClient(IFWXSession *This, const struct sockaddr *const ClientAddresses[],
                              uint32_t ClientAddressLength, struct sockaddr *ProxyAddress, uint32_t ProxyAddressLength,
                              int32_t Protocol, uint32_t dwNumberOfAddresses, uint32_t dwFlags, int32_t Backlog,
                              const fwx_guid *ProtocolGuid, IFWXSessionFilter *pSessionFilter, IUnknown *punkContext,
                              IFWXIpFilter *pIpFilter, IFWXConnection *ConnectionArray[]);
fwx_result fwx__RedirectConnections(IFWXSession *This, const struct sockaddr *const ConnectAddresses[],
                                    uint32_t ConnectAddressLength, uint32_t dwNumberOfAddresses,
                                    struct sockaddr *InternalAddress, uint32_t *InternalAddressLength,
                                    const struct sockaddr *ProxyExternalAddress, uint32_t ProxyExternalAddressLength,
                                    int32_t Protocol, uint32_t dwFlags, const fwx_guid *ProtocolGuid,
                                    IFWXSessionFilter *pSessionFilter, IUnknown *punkContext,
                                    IFWXFirewallAction *FirewallActionArray[]);
fwx_result fwx__SetDataFilterFactory(IFWXSession *This, uint32_t EventType, const struct sockaddr *Address,
                                     uint32_t AddressLength, IClassFactory *pFactory,
                                     FwxDataFilterPriorityClass Priority, IUnknown *pFilterContext, uint32_t dwFlags,
                                     IFWXFirewallAction **ppFirewallAction);
fwx_result fwx__RetroactiveAllowBind(IFWXSession *This, int32_t Protocol, const struct sockaddr *Address,
                                     uint32_t AddressLength, const fwx_guid *ProtocolGuid, uint32_t dwFlags,
                                     IFWXIpFilter *pIpFilter);
/* IFWXConnection::SetClientAddress for BindForClient connections. */
fwx_result fwx__binding_set_client(fwx__conn *c, const struct sockaddr *addr, uint32_t len);

/* ---- events for operators' tools (lib/core/events.c) ---- */

/* Each reports to the event sink (fwx_firewall_set_event_sink), if any, next to the log line
   that says the same. */
void fwx__event_session(fwx__session *s, fwx_event_type type);
void fwx__event_conn(fwx__conn *c, fwx_event_type type);
void fwx__event_refused(fwx_firewall *fw, fwx__session *s, const fwx__conn *c, int32_t protocol,
                        const struct sockaddr *src, const struct sockaddr *dst, fwx_result result, const char *rule,
                        const char *detail);
void fwx__event_grant(fwx__grant *g, fwx_event_type type);

#endif /* FWX_INTERNAL_H */
