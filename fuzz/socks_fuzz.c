/*
 * fwx fuzzing - the SOCKS5 negotiation's life cycle in the proxy backend
 * (lib/backends/proxy/socks.c), libFuzzer target.
 *
 * How socks.c is run. The real lib/backends/proxy/socks.c is compiled into this translation unit
 * (#include below) and runs unmodified; what it calls outside itself is replaced by a small,
 * deterministic model: the libuv calls it makes (handles, reads, timers, getaddrinfo, cancel,
 * close) and the fwx core calls (sessions, admit, open, relays, UDP ports). The address helpers
 * (lib/util/sockaddr.c) are the real ones. The model follows libuv's documented contract:
 *   - uv_close() callbacks run in the loop's closing phase, after the current callback returns;
 *   - a uv_getaddrinfo() request's callback is always called exactly once, also after
 *     uv_cancel() (then with UV_ECANCELED: libuv 1.44 uv__work_cancel() posts it to the work
 *     queue's async handle, run in the poll phase of the same iteration, before the closing
 *     phase), and the request's memory must stay valid until then;
 *   - uv_cancel() of a lookup already executing in the thread pool fails with UV_EBUSY and the
 *     real result arrives later;
 *   - a read callback is called only while reading is started, with at most the size alloc_cb
 *     gave.
 * Why not the real backend over a socketpair: the real backend needs a firewall, a policy, a
 * libuv loop with real timers (10 s negotiation timeout) and the system resolver (network,
 * nondeterministic timing), so a run would be slow and not reproducible, and the interleavings
 * that matter (a timeout or a shutdown while a lookup is in flight) would be luck. The model
 * makes every interleaving an input byte. The client side of the connection is a real
 * AF_UNIX socketpair, so the replies socks.c send()s are real bytes the harness reads back.
 *
 * Input framing (as fuzz/ftp_parse_fuzz.c): chunks separated by 01 D5 CA 7A.
 *   Chunk 0 is the configuration (the core's answers), byte 0:
 *     bit 0: the client is IPv6 (2001:db8::8 -> [2001:db8::1]:1080), else 10.0.0.8 -> 10.0.0.1:1080
 *     bit 1: fwx__proxy_session_explicit() fails
 *     bits 2-3: fwx_firewall_admit(_in_session)(): 0,3 not found (then fwx_connection_open), 1 admitted,
 *               2 denied
 *     bit 4: fwx_connection_open() denies
 *     bits 5-6: the upstream connect: 0 ok, 1 refused, 2 unreachable, 3 other error
 *     bit 7: the BIND listener / UDP relay port cannot be opened
 *   Every later chunk is one loop event; its first byte selects it (mod 8), the rest is its data:
 *     0-3: the client sends the data (it is read when reading is on, in reads of at most what
 *          alloc_cb offers; else it waits in the "kernel" until reading restarts)
 *     4:   the client half-closes (EOF after any waiting data)
 *     5:   the timers fire
 *     6:   the lookup: data[0] bit 1 set: it starts executing (a cancel now fails);
 *          else it finishes: data[0] bit 0 success with data[1..] as the address (4 bytes: IPv4,
 *          16: IPv6), else failure
 *     7:   the backend shuts down (fwx__proxy_socks_close_all)
 *   At the end the harness drains: finishes any lookup, fires timers, delivers EOF, shuts down.
 *
 * Invariants (a violation is __builtin_trap(); ASan/UBSan report memory errors):
 *   - never reads past its buffer: c->buf beyond c->len is ASan-poisoned while socks.c runs;
 *   - every negotiation ends: after the drain the client is closed, its handles closed, its
 *     memory freed, every lookup called back, every session, connection, relay and UDP port
 *     released, and the client sees EOF;
 *   - what the client receives is at most one method reply 05 00 / 05 FF (05 00 iff it offered
 *     method 00), then at most one request reply 05 REP 00 ATYP(1|4) ADDR PORT with a defined
 *     REP, never a request reply before the method reply 05 00, nothing after 05 FF;
 *   - the gateway acts on a request (lookup, admit/open, bind, UDP port) only after a complete
 *     greeting with method 00, for exactly the bytes of one request the parser accepts (nothing
 *     after it), and only once;
 *   - a host name is looked up only for a CONNECT, exactly as the request named it, with the
 *     request's port as the service;
 *   - a CONNECT destination (given or resolved) reaching admit/open is the request's address
 *     (v4-mapped IPv6 canonicalised to IPv4) and never port 0, unspecified, broadcast, multicast
 *     or the gateway's own/loopback.
 *
 * What the bytes mean is not this target's: the pure parser (socks_wire.c) decides it and
 * fuzz/socks_parse_fuzz.c fuzzes it alone, without a model. The invariants above that name a
 * well-formed request use that parser as their reference. What stays here is what no parser
 * can see: socks.c's life cycle around the parser (a lookup, a timeout and a shutdown in every
 * order; the close that waits for a lookup libuv can no longer cancel, finding S1), its
 * answers in order, and that every handle, lookup, session and byte of memory is given back.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <assert.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backends/proxy/socks.c"
#include "backends/proxy/socks_caps.c" /* the caps socks.c counts against */

/* The firewall is opaque to socks.c (it uses only public calls); the model's is a token. */
struct fwx_firewall {
    int unused;
};

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN 1
#endif
#ifdef FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define CHECK(x)                                                                                  \
    do {                                                                                          \
        if (!(x))                                                                                 \
            __builtin_trap();                                                                     \
    } while (0)

static const uint8_t MARKER[4] = {0x01, 0xD5, 0xCA, 0x7A};

/* ---- the model's state ---------------------------------------------------------------------- */

#define MAX_CLOSING 16
#define MAX_TIMERS 4
#define MAX_RELAYS 4

typedef struct model {
    uint8_t cfg;
    pstate st;
    fwx_firewall fw; /* a token: the core's answers are the fakes below */
    socks_listener listener;
    int fd_gw, fd_client; /* the socketpair: socks.c's end, the client's end */
    socks_client *cur;    /* the negotiating client, until its memory is freed */
    /* handles */
    struct {
        uv_handle_t *h;
        uv_close_cb cb;
    } closing[MAX_CLOSING];
    int n_closing;
    struct {
        uv_timer_t *t;
        uv_timer_cb cb;
        bool armed;
    } timers[MAX_TIMERS];
    int n_timers;
    uv_stream_t *read_stream;
    uv_alloc_cb alloc_cb;
    uv_read_cb read_cb;
    bool reading;
    /* the client's bytes not yet read, and an EOF behind them */
    uint8_t *kernel;
    size_t n_kernel, cap_kernel;
    bool eof;
    /* everything socks.c read, in order */
    uint8_t consumed[4096];
    size_t n_consumed;
    /* the lookup */
    uv_getaddrinfo_t *gai_req;
    uv_getaddrinfo_cb gai_cb;
    bool gai_outstanding, gai_executing, gai_owed, gai_cancelled;
    int gai_status;
    struct addrinfo *gai_res;
    int n_lookups;
    /* the core */
    int n_sessions, n_conns, n_acts, n_udp;
    prelay *relays[MAX_RELAYS];
    bool relay_connect_pending[MAX_RELAYS];
    int n_relays;
    bool shut_down;
    /* what the client received */
    uint8_t out[256];
    size_t n_out;
} model;

static model M;
static fwx__socks_request acted_request(void);

static bool sa_eq(const struct sockaddr *a, const struct sockaddr *b)
{
    return fwx__sa_same_ip(a, b) && fwx__sa_port(a) == fwx__sa_port(b);
}

static void set_addr(struct sockaddr_storage *ss, bool v6, const char *ip, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &s6->sin6_addr);
        s6->sin6_port = htons(port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &s4->sin_addr);
        s4->sin_port = htons(port);
    }
}

/* ---- libuv, modelled ------------------------------------------------------------------------ */

uv_buf_t uv_buf_init(char *base, unsigned int len)
{
    uv_buf_t b;
    b.base = base;
    b.len = len;
    return b;
}

int uv_tcp_init(uv_loop_t *loop, uv_tcp_t *h)
{
    (void)loop;
    memset(h, 0, sizeof *h);
    h->type = UV_TCP;
    return 0;
}

int uv_tcp_init_ex(uv_loop_t *loop, uv_tcp_t *h, unsigned int flags)
{
    (void)flags;
    return uv_tcp_init(loop, h);
}

/* One firewall, one loop: the listeners are never shared (fwx_firewall_options.listen_shared). */
uint32_t fwx_firewall_listen_shared(const fwx_firewall *fw)
{
    (void)fw;
    return 0;
}

int fwx__reuseport(int fd)
{
    (void)fd;
    assert(!"a listener of one loop is never shared");
    return -EINVAL;
}

int fwx__reuseport_by_source(int fd, uint32_t n)
{
    (void)fd, (void)n;
    assert(!"a listener of one loop is never shared");
    return -EINVAL;
}

int uv_timer_init(uv_loop_t *loop, uv_timer_t *t)
{
    (void)loop;
    memset(t, 0, sizeof *t);
    t->type = UV_TIMER;
    CHECK(M.n_timers < MAX_TIMERS);
    M.timers[M.n_timers].t = t;
    M.timers[M.n_timers].armed = false;
    M.n_timers++;
    return 0;
}

int uv_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t timeout, uint64_t repeat)
{
    (void)timeout;
    (void)repeat;
    CHECK(!uv_is_closing((uv_handle_t *)t));
    for (int i = 0; i < M.n_timers; i++)
        if (M.timers[i].t == t) {
            M.timers[i].cb = cb;
            M.timers[i].armed = true;
            return 0;
        }
    CHECK(0);
    return 0;
}

int uv_timer_stop(uv_timer_t *t)
{
    for (int i = 0; i < M.n_timers; i++)
        if (M.timers[i].t == t)
            M.timers[i].armed = false;
    return 0;
}

/* libuv's own uv_is_closing reads the flags; ours keeps them in the handle's flags field. */
#define FUZZ_CLOSING 0x1u
int uv_is_closing(const uv_handle_t *h) { return (h->flags & FUZZ_CLOSING) != 0; }

void uv_close(uv_handle_t *h, uv_close_cb cb)
{
    /* libuv asserts a handle is closed only once. */
    CHECK(!uv_is_closing(h));
    h->flags |= FUZZ_CLOSING;
    CHECK(M.n_closing < MAX_CLOSING);
    M.closing[M.n_closing].h = h;
    M.closing[M.n_closing].cb = cb;
    M.n_closing++;
    for (int i = 0; i < M.n_timers; i++)
        if (M.timers[i].t == (uv_timer_t *)h)
            M.timers[i].armed = false;
    if (M.read_stream == (uv_stream_t *)h)
        M.reading = false;
    if (M.cur != NULL && h == (uv_handle_t *)&M.cur->tcp && M.fd_gw >= 0) {
        close(M.fd_gw); /* uv_close closes the socket */
        M.fd_gw = -1;
    }
}

int uv_fileno(const uv_handle_t *h, uv_os_fd_t *fd)
{
    if (M.cur != NULL && h == (const uv_handle_t *)&M.cur->tcp && M.fd_gw >= 0 && !uv_is_closing(h)) {
        *fd = M.fd_gw;
        return 0;
    }
    return UV_EBADF;
}

int uv_accept(uv_stream_t *server, uv_stream_t *client)
{
    (void)server;
    (void)client;
    return 0;
}

int uv_tcp_getpeername(const uv_tcp_t *h, struct sockaddr *name, int *namelen)
{
    (void)h;
    struct sockaddr_storage ss;
    bool v6 = M.cfg & 1;
    set_addr(&ss, v6, v6 ? "2001:db8::8" : "10.0.0.8", 40000);
    memcpy(name, &ss, fwx__sa_len((struct sockaddr *)&ss));
    *namelen = (int)fwx__sa_len((struct sockaddr *)&ss);
    return 0;
}

int uv_tcp_getsockname(const uv_tcp_t *h, struct sockaddr *name, int *namelen)
{
    struct sockaddr_storage ss;
    bool v6 = M.cfg & 1;
    bool bindl = M.cur != NULL && M.cur->bind_tcp != NULL && h == M.cur->bind_tcp;
    set_addr(&ss, v6, v6 ? "2001:db8::1" : "10.0.0.1", bindl ? 50000 : 1080);
    memcpy(name, &ss, fwx__sa_len((struct sockaddr *)&ss));
    *namelen = (int)fwx__sa_len((struct sockaddr *)&ss);
    return 0;
}

int uv_tcp_bind(uv_tcp_t *h, const struct sockaddr *addr, unsigned int flags)
{
    (void)h;
    (void)addr;
    (void)flags;
    return (M.cfg & 0x80) ? UV_EADDRINUSE : 0;
}

int uv_listen(uv_stream_t *s, int backlog, uv_connection_cb cb)
{
    (void)s;
    (void)backlog;
    (void)cb;
    return 0;
}

int uv_read_start(uv_stream_t *s, uv_alloc_cb alloc_cb, uv_read_cb read_cb)
{
    CHECK(!uv_is_closing((uv_handle_t *)s));
    M.read_stream = s;
    M.alloc_cb = alloc_cb;
    M.read_cb = read_cb;
    M.reading = true;
    return 0;
}

int uv_read_stop(uv_stream_t *s)
{
    if (M.read_stream == s)
        M.reading = false;
    return 0;
}

int uv_getaddrinfo(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb, const char *node,
                   const char *service, const struct addrinfo *hints)
{
    (void)loop;
    (void)hints;
    socks_client *c = M.cur;
    CHECK(c != NULL && req == &c->gai && cb != NULL);
    CHECK(!M.gai_outstanding);
    M.n_lookups++;
    M.n_acts++;
    /* Invariant: a CONNECT's name exactly as the request named it, its port as the service
       (the parser has checked the name's bytes). */
    CHECK(node != NULL && service != NULL);
    fwx__socks_request r = acted_request();
    CHECK(r.cmd == FWX__SOCKS_CMD_CONNECT && r.atyp == FWX__SOCKS_ATYP_NAME && strcmp(node, r.name) == 0);
    char want[8];
    snprintf(want, sizeof want, "%u", (unsigned)r.port);
    CHECK(strcmp(service, want) == 0);
    memset(&req->work_req, 0, sizeof req->work_req);
    M.gai_req = req;
    M.gai_cb = cb;
    M.gai_outstanding = true;
    M.gai_executing = false;
    M.gai_owed = false;
    M.gai_cancelled = false;
    M.gai_res = NULL;
    return 0;
}

void uv_freeaddrinfo(struct addrinfo *ai)
{
    if (ai == NULL)
        return;
    free(ai->ai_addr);
    free(ai);
}

int uv_cancel(uv_req_t *req)
{
    if (!M.gai_outstanding || req != (uv_req_t *)M.gai_req)
        return UV_EINVAL;
    if (M.gai_executing || M.gai_owed)
        return UV_EBUSY; /* the lookup runs on; its callback comes with its result */
    /* Cancelled: the callback still comes, with UV_ECANCELED, in a later iteration. */
    M.gai_owed = true;
    M.gai_cancelled = true;
    M.gai_status = UV_ECANCELED;
    M.gai_res = NULL;
    return 0;
}

int uv_udp_try_send(uv_udp_t *h, const uv_buf_t bufs[], unsigned int nbufs, const struct sockaddr *addr)
{
    (void)h;
    (void)bufs;
    (void)nbufs;
    (void)addr;
    return UV_EAGAIN;
}

/* ---- the fwx core, modelled ------------------------------------------------------------------ */

void fwx_firewall_log(fwx_firewall *fw, fwx_log_level level, const char *fmt, ...)
{
    (void)fw;
    (void)level;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
}

fwx_result fwx_firewall_report_refused(fwx_firewall *fw, int32_t protocol, const struct sockaddr *source,
                                       const struct sockaddr *destination, fwx_result result, const char *detail)
{
    (void)fw, (void)source, (void)destination, (void)detail;
    assert(FWX_FAILED(result) && protocol == FWX_PROTOCOL_TCP); /* socks.c reports only TCP cap refusals */
    return FWX_S_OK;
}

void *fwx_firewall_backend_state(fwx_firewall *fw)
{
    (void)fw;
    return &M.st;
}

/* The proxy backend's identity, which socks.c and socks_caps.c look their state up by (through
   a wrapping backend, if any): the model has the one state. */
const fwx_backend fwx__proxy_backend = {.version = 1, .name = "proxy"};

void *fwx_firewall_backend_state_of(fwx_firewall *fw, const fwx_backend *backend)
{
    (void)fw;
    return backend == &fwx__proxy_backend ? &M.st : NULL;
}

static bool model_is_local(const struct sockaddr *addr)
{
    if (fwx__sa_is_loopback(addr))
        return true;
    struct sockaddr_storage g;
    set_addr(&g, false, "10.0.0.1", 0);
    if (fwx__sa_same_ip(addr, (struct sockaddr *)&g))
        return true;
    set_addr(&g, false, "203.0.113.1", 0);
    if (fwx__sa_same_ip(addr, (struct sockaddr *)&g))
        return true;
    set_addr(&g, true, "2001:db8::1", 0);
    return fwx__sa_same_ip(addr, (struct sockaddr *)&g);
}

int32_t fwx_firewall_is_local_address(const fwx_firewall *fw, const struct sockaddr *addr, uint32_t len)
{
    (void)fw;
    return fwx__sa_valid(addr, len) && model_is_local(addr);
}

/* The core's rule (lib/core/firewall.c), over the model's gateway addresses above; the
   invariants below check the outcome independently. */
const char *fwx_firewall_forbidden_host(const fwx_firewall *fw, const struct sockaddr *addr, uint32_t len)
{
    (void)fw;
    if (!fwx__sa_valid(addr, len) || fwx__sa_is_unspecified(addr) || fwx__sa_is_multicast(addr) ||
        fwx__sa_is_broadcast(addr) || model_is_local(addr))
        return "forbidden";
    return NULL;
}

/* The request socks.c acts on, as the pure parser reads it (fuzz/socks_parse_fuzz.c checks the
   parser itself): what the client sent is a greeting offering method 00 and then exactly one
   well-formed request, nothing after it. */
static fwx__socks_request acted_request(void)
{
    fwx__socks_greeting g;
    fwx__socks_request r;
    fwx__socks_err err;
    size_t used;
    CHECK(fwx__socks_parse_greeting(M.consumed, M.n_consumed, &g, &used, &err) == FWX__SOCKS_DONE);
    CHECK(fwx__socks_greeting_offers(&g, FWX__SOCKS_METHOD_NONE));
    CHECK(fwx__socks_parse_request(M.consumed + used, M.n_consumed - used, &r, &err) == FWX__SOCKS_DONE);
    return r;
}

static void check_request_exact(void) { (void)acted_request(); }

/* A CONNECT destination that reaches the core: the request's (v4-mapped canonicalised), or
   for a name the looked-up address with the request's port; never a forbidden one. */
static void check_connect_dst(const struct sockaddr *dst)
{
    CHECK(dst != NULL && (dst->sa_family == AF_INET || dst->sa_family == AF_INET6));
    CHECK(fwx__sa_port(dst) != 0);
    CHECK(!fwx__sa_is_unspecified(dst) && !fwx__sa_is_multicast(dst) && !fwx__sa_is_broadcast(dst));
    CHECK(!model_is_local(dst));
    fwx__socks_request r = acted_request();
    CHECK(r.cmd == FWX__SOCKS_CMD_CONNECT);
    if (r.atyp == FWX__SOCKS_ATYP_NAME) {
        CHECK(M.n_lookups == 1 && fwx__sa_port(dst) == r.port);
        return;
    }
    struct sockaddr_storage want;
    if (!fwx__sa_canon((struct sockaddr *)&r.addr, fwx__sa_len((struct sockaddr *)&r.addr), &want))
        want = r.addr;
    CHECK(sa_eq(dst, (struct sockaddr *)&want));
}

typedef struct fake_conn {
    IFWXConnection iface;
    int magic;
} fake_conn;

static IFWXConnection *new_conn(void)
{
    fake_conn *f = calloc(1, sizeof *f);
    CHECK(f != NULL);
    f->magic = 0x636f6e6e;
    M.n_conns++;
    return &f->iface;
}

void fwx_connection_close(IFWXConnection *conn)
{
    fake_conn *f = (fake_conn *)conn;
    CHECK(f != NULL && f->magic == 0x636f6e6e);
    f->magic = 0;
    free(f);
    M.n_conns--;
}

fwx_result fwx_firewall_admit(fwx_firewall *fw, const fwx_flow *flow, IFWXConnection **out)
{
    (void)fw;
    *out = NULL;
    CHECK(flow != NULL && flow->protocol == FWX_PROTOCOL_TCP);
    check_request_exact();
    check_connect_dst(flow->destination);
    M.n_acts++;
    switch ((M.cfg >> 2) & 3) {
    case 1:
        *out = new_conn();
        return FWX_S_OK;
    case 2:
        return FWX_E_DENIED;
    default:
        return FWX_E_NOT_FOUND;
    }
}

/* The SOCKS code admits in its control channel's session: the same answers. */
fwx_result fwx_firewall_admit_in_session(fwx_firewall *fw, IFWXSession *session, const fwx_flow *flow,
                                         IFWXConnection **out)
{
    (void)session;
    return fwx_firewall_admit(fw, flow, out);
}

fwx_result fwx_connection_open(IFWXSession *session, const fwx_connection_params *params, IFWXConnection **out)
{
    *out = NULL;
    CHECK(session != NULL && params != NULL);
    check_request_exact();
    if (params->event == fwx_Connect_Tcp)
        check_connect_dst(params->external_peer);
    else
        CHECK(params->event == fwx_Bind_Tcp);
    M.n_acts++;
    if (M.cfg & 0x10)
        return FWX_E_NETWORK_RULES_DENIED;
    *out = new_conn();
    return FWX_S_OK;
}

void fwx__proxy_state_maybe_free(pstate *st) { (void)st; }

/* Descriptor shortage (fdlimit.c) and login (socks_auth.c) are not what this target explores:
   the state has no user table, so the no-authentication method is the only one offered. */
bool fwx__proxy_fd_short(int err) { return err == UV_EMFILE || err == UV_ENFILE; }
void fwx__proxy_fd_shortage(pstate *st, int err, const char *what) { (void)st, (void)err, (void)what; }
bool fwx__socks_users_verify(const fwx__socks_users *t, const char *user, const char *password)
{
    (void)t, (void)user, (void)password;
    CHECK(!"a login without a user table");
    return false;
}

psession *fwx__proxy_session_explicit(pstate *st, const struct sockaddr *client, const struct sockaddr *gw,
                                      const char *user)
{
    (void)st;
    (void)client;
    (void)gw;
    (void)user;
    check_request_exact();
    if (M.cfg & 2)
        return NULL;
    psession *ps = calloc(1, sizeof *ps);
    CHECK(ps != NULL);
    ps->session = (IFWXSession *)(void *)ps; /* never dereferenced by socks.c */
    M.n_sessions++;
    return ps;
}

void fwx__proxy_session_unref(pstate *st, psession *ps)
{
    (void)st;
    if (ps == NULL)
        return;
    CHECK(ps->relays > 0);
    if (--ps->relays > 0)
        return;
    free(ps);
    M.n_sessions--;
}

prelay *fwx__proxy_relay_new(pstate *st, int fd)
{
    CHECK(fd >= 0);
    CHECK(M.n_relays < MAX_RELAYS);
    prelay *r = calloc(1, sizeof *r);
    CHECK(r != NULL);
    r->st = st;
    r->internal_fd = fd;
    r->external_fd = -1;
    st->handles++;
    M.relays[M.n_relays] = r;
    M.relay_connect_pending[M.n_relays] = false;
    M.n_relays++;
    return r;
}

static void relay_finish(prelay *r)
{
    for (int i = 0; i < M.n_relays; i++)
        if (M.relays[i] == r) {
            M.relays[i] = M.relays[M.n_relays - 1];
            M.relay_connect_pending[i] = M.relay_connect_pending[M.n_relays - 1];
            M.n_relays--;
            break;
        }
    if (r->internal_fd >= 0)
        close(r->internal_fd);
    if (r->conn != NULL)
        fwx_connection_close(r->conn);
    fwx__proxy_session_unref(r->st, r->ps);
    r->st->handles--;
    free(r);
}

void fwx__proxy_relay_fail(prelay *r) { relay_finish(r); }

/* Since 1876d24 socks.c hands the connection over with this (proxy.c also indexes it). */
void fwx__proxy_relay_set_conn(prelay *r, IFWXConnection *conn) { r->conn = conn; }

void fwx__proxy_relay_connect(prelay *r)
{
    CHECK(r->on_connected != NULL && r->conn != NULL);
    for (int i = 0; i < M.n_relays; i++)
        if (M.relays[i] == r)
            M.relay_connect_pending[i] = true;
}

void fwx__proxy_relay_pump(prelay *r, int external_fd)
{
    close(external_fd);
    relay_finish(r);
}

udp_port *fwx__proxy_udp_port_open(pstate *st, int kind, const struct sockaddr *addr, uint32_t flags, fwx_result *hr)
{
    (void)flags;
    CHECK(kind == UDP_PORT_SOCKS);
    check_request_exact();
    M.n_acts++;
    if (M.cfg & 0x80) {
        *hr = FWX_E_ADDRINUSE;
        return NULL;
    }
    udp_port *p = calloc(1, sizeof *p);
    CHECK(p != NULL);
    p->st = st;
    p->kind = kind;
    memcpy(&p->local, addr, fwx__sa_len(addr));
    fwx__sa_set_port((struct sockaddr *)&p->local, 50001);
    M.n_udp++;
    *hr = FWX_S_OK;
    return p;
}

void fwx__proxy_udp_port_release(udp_port *p, bool kill_flows)
{
    (void)kill_flows;
    CHECK(p != NULL && p->socks == NULL);
    free(p);
    M.n_udp--;
}

udp_flow *fwx__proxy_udp_flow_find(udp_port *p, const struct sockaddr *peer)
{
    (void)p;
    (void)peer;
    return NULL;
}

udp_flow *fwx__proxy_udp_flow_for(udp_port *p, const struct sockaddr *dst, IFWXConnection *conn)
{
    (void)p;
    (void)dst;
    (void)conn;
    return NULL;
}

void fwx__proxy_udp_flow_send(udp_flow *f, const uint8_t *data, size_t n)
{
    (void)f;
    (void)data;
    (void)n;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static void poison_buf(void)
{
    socks_client *c = M.cur;
    if (c != NULL && c->len <= sizeof c->buf)
        POISON(c->buf + c->len, sizeof c->buf - c->len);
}

static void unpoison_buf(void)
{
    if (M.cur != NULL)
        UNPOISON(M.cur->buf, sizeof M.cur->buf);
}

static void collect_output(void)
{
    for (;;) {
        uint8_t tmp[256];
        ssize_t n = recv(M.fd_client, tmp, sizeof tmp, MSG_DONTWAIT);
        if (n <= 0)
            return;
        CHECK(M.n_out + (size_t)n <= sizeof M.out); /* never more than two replies */
        memcpy(M.out + M.n_out, tmp, (size_t)n);
        M.n_out += (size_t)n;
    }
}

/* The closing phase: close callbacks, in order; the client's memory goes with its last. */
static void run_closing(void)
{
    while (M.n_closing > 0) {
        uv_handle_t *h = M.closing[0].h;
        uv_close_cb cb = M.closing[0].cb;
        memmove(&M.closing[0], &M.closing[1], (size_t)(M.n_closing - 1) * sizeof M.closing[0]);
        M.n_closing--;
        socks_client *c = M.cur;
        bool last = false;
        if (c != NULL && (h == (uv_handle_t *)&c->tcp || h == (uv_handle_t *)&c->timer || h->data == c) &&
            c->closing == 1)
            last = true;
        for (int i = 0; i < M.n_timers; i++)
            if (M.timers[i].t == (uv_timer_t *)h) {
                M.timers[i] = M.timers[M.n_timers - 1];
                M.n_timers--;
                break;
            }
        if (M.read_stream == (uv_stream_t *)h)
            M.read_stream = NULL;
        if (last) {
            unpoison_buf();
            M.cur = NULL; /* freed by the callback */
        }
        if (cb != NULL)
            cb(h);
    }
}

/* The next iteration: completed work (the lookup), then connects finishing. */
static void run_completions(void)
{
    if (M.gai_owed) {
        uv_getaddrinfo_t *req = M.gai_req;
        uv_getaddrinfo_cb cb = M.gai_cb;
        int status = M.gai_status;
        struct addrinfo *res = M.gai_res;
        M.gai_outstanding = M.gai_owed = false;
        M.gai_req = NULL;
        M.gai_res = NULL;
        /* libuv (uv__getaddrinfo_done) reads the request before calling back: if socks.c freed
           the client holding it, this is where it is used after free. */
        req->addrinfo = res;
        /* A negotiation closed while its lookup ran waits for the lookup: the callback is then
           the last thing its close waited for, and frees the client. */
        socks_client *c = M.cur;
        bool frees = c != NULL && c->state == S_DONE && c->closing == 1;
        if (frees)
            unpoison_buf();
        cb(req, status, res);
        if (frees)
            M.cur = NULL;
        else
            poison_buf();
    }
    for (int i = 0; i < M.n_relays; i++) {
        if (!M.relay_connect_pending[i])
            continue;
        prelay *r = M.relays[i];
        M.relay_connect_pending[i] = false;
        int st = (M.cfg >> 5) & 3;
        int status = st == 0 ? 0 : st == 1 ? UV_ECONNREFUSED : st == 2 ? UV_EHOSTUNREACH : UV_EIO;
        r->on_connected(r, status, NULL); /* no upstream address, as proxy.c when it reads none */
        relay_finish(r);
        i = -1; /* the array changed */
    }
}

static void loop_tail(void)
{
    /* A lookup cancelled while still queued: libuv 1.44 posts its UV_ECANCELED callback to the
       work queue's async handle, which the poll phase of the same iteration runs, before the
       closing phase (checked with the real libuv: fuzz/libuv-cancel-check.c). So it is called
       before the client's handles finish closing: no use after free on this path. */
    if (M.gai_owed && M.gai_cancelled)
        run_completions();
    run_closing();
    collect_output();
    run_completions();
    run_closing();
    collect_output();
}

static void deliver_reads(void)
{
    while (M.cur != NULL && M.reading && M.read_stream == (uv_stream_t *)&M.cur->tcp &&
           !uv_is_closing((uv_handle_t *)&M.cur->tcp)) {
        socks_client *c = M.cur;
        if (M.n_kernel == 0) {
            if (!M.eof)
                return;
            M.eof = false;
            unpoison_buf();
            M.read_cb((uv_stream_t *)&c->tcp, UV_EOF, NULL);
            poison_buf();
            continue;
        }
        uv_buf_t b;
        unpoison_buf();
        M.alloc_cb((uv_handle_t *)&c->tcp, 65536, &b);
        CHECK(b.base >= (char *)c->buf && b.base + b.len <= (char *)c->buf + sizeof c->buf);
        size_t n = M.n_kernel < b.len ? M.n_kernel : b.len;
        memcpy(b.base, M.kernel, n);
        memmove(M.kernel, M.kernel + n, M.n_kernel - n);
        M.n_kernel -= n;
        CHECK(M.n_consumed + n <= sizeof M.consumed); /* at most 257 + 600 bytes are ever read */
        memcpy(M.consumed + M.n_consumed, b.base, n);
        M.n_consumed += n;
        /* Only the bytes read are addressable to socks.c beyond what it held. */
        POISON(c->buf, sizeof c->buf);
        UNPOISON(c->buf, c->len + n);
        M.read_cb((uv_stream_t *)&c->tcp, (ssize_t)n, &b);
        poison_buf();
    }
}

static void fire_timers(void)
{
    for (int i = 0; i < M.n_timers; i++) {
        if (!M.timers[i].armed)
            continue;
        M.timers[i].armed = false;
        uv_timer_t *t = M.timers[i].t;
        unpoison_buf();
        M.timers[i].cb(t);
        poison_buf();
        return; /* one per event: the array may have changed */
    }
}

static void finish_lookup(const uint8_t *d, size_t n)
{
    if (!M.gai_outstanding || M.gai_owed)
        return;
    if (n > 0 && (d[0] & 2) && !M.gai_executing) {
        M.gai_executing = true;
        return;
    }
    M.gai_owed = true;
    M.gai_status = UV_EAI_NONAME;
    M.gai_res = NULL;
    if (n > 0 && (d[0] & 1)) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        socklen_t len;
        if (n >= 17) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            s6->sin6_family = AF_INET6;
            memcpy(&s6->sin6_addr, d + 1, 16);
            len = sizeof *s6;
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            s4->sin_family = AF_INET;
            uint8_t a[4] = {198, 51, 100, 7};
            memcpy(a, d + 1, n - 1 < 4 ? n - 1 : 4);
            memcpy(&s4->sin_addr, a, 4);
            len = sizeof *s4;
        }
        struct addrinfo *ai = calloc(1, sizeof *ai);
        CHECK(ai != NULL);
        ai->ai_addr = malloc(len);
        CHECK(ai->ai_addr != NULL);
        memcpy(ai->ai_addr, &ss, len);
        ai->ai_addrlen = len;
        ai->ai_family = ss.ss_family;
        ai->ai_socktype = SOCK_STREAM;
        M.gai_status = 0;
        M.gai_res = ai;
    }
}

static void shutdown_backend(void)
{
    if (M.shut_down)
        return;
    M.shut_down = true;
    M.st.closing = true;
    unpoison_buf();
    fwx__proxy_socks_close_all(&M.st);
    poison_buf();
}

static void event(uint8_t op, const uint8_t *d, size_t n)
{
    switch (op % 8) {
    case 0:
    case 1:
    case 2:
    case 3:
        if (M.n_kernel + n > M.cap_kernel) {
            M.cap_kernel = (M.n_kernel + n) * 2;
            M.kernel = realloc(M.kernel, M.cap_kernel);
            CHECK(M.kernel != NULL);
        }
        if (n > 0) {
            memcpy(M.kernel + M.n_kernel, d, n);
            M.n_kernel += n;
        }
        deliver_reads();
        break;
    case 4:
        M.eof = true;
        deliver_reads();
        break;
    case 5:
        fire_timers();
        break;
    case 6:
        finish_lookup(d, n);
        break;
    case 7:
        shutdown_backend();
        break;
    }
    loop_tail();
    deliver_reads(); /* reading may have restarted (BIND wait, UDP association) */
    loop_tail();
}

/* ---- the reply invariants ------------------------------------------------------------------- */

static void check_output(void)
{
    size_t i = 0;
    const uint8_t *o = M.out;
    bool method_ok = false;
    if (M.n_out == 0)
        goto acts;
    /* The method reply: it exists only for a complete greeting. */
    CHECK(M.n_out >= 2 && o[0] == 5 && (o[1] == 0 || o[1] == 0xFF));
    CHECK(M.n_consumed >= 2 && M.consumed[0] == 5 && M.consumed[1] > 0 && M.n_consumed >= 2 + (size_t)M.consumed[1]);
    {
        bool offered = memchr(M.consumed + 2, 0, M.consumed[1]) != NULL;
        CHECK(offered == (o[1] == 0));
        method_ok = offered;
    }
    i = 2;
    if (!method_ok) {
        CHECK(M.n_out == 2);
        goto acts;
    }
    if (i == M.n_out)
        goto acts;
    /* The request reply. */
    CHECK(M.n_out - i >= 4 && o[i] == 5 && o[i + 2] == 0);
    {
        uint8_t rep = o[i + 1];
        CHECK(rep == 0 || rep == 1 || rep == 2 || rep == 4 || rep == 5 || rep == 7 || rep == 8);
        size_t len = o[i + 3] == 1 ? 10 : o[i + 3] == 4 ? 22 : 0;
        CHECK(len != 0 && M.n_out - i == len);
        if (rep == 0)
            CHECK(M.n_acts > 0);
    }
acts:
    /* Acting on a request needs the method 00 first. */
    if (M.n_acts > 0)
        CHECK(method_ok);
}

/* ---- the target ------------------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    memset(&M, 0, sizeof M);
    M.fd_gw = M.fd_client = -1;
    M.st.magic = FWX__PROXY_MAGIC;
    M.st.fw = &M.fw;
    M.listener.st = &M.st;
    M.listener.tcp.data = &M.listener;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    M.fd_gw = sv[0];
    M.fd_client = sv[1];

    /* Split into chunks. */
    size_t at = 0;
    int k = 0;
    bool accepted = false;
    while (at <= size) {
        const uint8_t *end = NULL;
        for (size_t i = at; i + 4 <= size; i++)
            if (memcmp(data + i, MARKER, 4) == 0) {
                end = data + i;
                break;
            }
        size_t clen = end ? (size_t)(end - (data + at)) : size - at;
        if (k == 0) {
            M.cfg = clen > 0 ? data[at] : 0;
            /* The connection arrives. */
            on_accept((uv_stream_t *)&M.listener.tcp, 0);
            M.cur = M.st.clients;
            CHECK(M.cur != NULL && M.cur->state == S_GREETING);
            poison_buf();
            accepted = true;
        } else if (clen > 0) {
            event(data[at], data + at + 1, clen - 1);
        }
        k++;
        if (end == NULL)
            break;
        at = (size_t)(end - data) + 4;
    }
    CHECK(accepted);

    /* Drain: every negotiation must end. */
    for (int iter = 0; iter < 64; iter++) {
        if (M.gai_outstanding && !M.gai_owed) {
            finish_lookup(NULL, 0);
            loop_tail();
            continue;
        }
        if (M.gai_owed || M.n_closing > 0) {
            loop_tail();
            continue;
        }
        bool armed = false;
        for (int i = 0; i < M.n_timers; i++)
            armed |= M.timers[i].armed;
        if (armed) {
            fire_timers();
            loop_tail();
            continue;
        }
        if (M.cur != NULL && M.reading) {
            M.n_kernel = 0;
            M.eof = true;
            deliver_reads();
            loop_tail();
            continue;
        }
        break;
    }
    /* No hang: nothing left that could ever end the negotiation, so it must have ended. */
    CHECK(M.cur == NULL || M.cur->state == S_DONE);
    shutdown_backend();
    loop_tail();
    loop_tail();
    collect_output();
    check_output();

    /* Everything released. */
    CHECK(M.cur == NULL);
    CHECK(M.st.clients == NULL);
    CHECK(M.st.handles == 0);
    CHECK(!M.gai_outstanding && !M.gai_owed);
    CHECK(M.n_relays == 0 && M.n_sessions == 0 && M.n_conns == 0 && M.n_udp == 0);
    CHECK(M.n_closing == 0);
    CHECK(M.fd_gw == -1);
    /* The client sees the end of the stream: no descriptor of the connection left open. */
    uint8_t tmp[16];
    ssize_t r = recv(M.fd_client, tmp, sizeof tmp, MSG_DONTWAIT);
    CHECK(r == 0);
    close(M.fd_client);
    free(M.kernel);
    return 0;
}
