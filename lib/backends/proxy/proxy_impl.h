/*
 * fwx - the proxy backend's own objects, shared by proxy.c and socks.c. Internal.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_PROXY_IMPL_H
#define FWX_PROXY_IMPL_H

#include <fwx/fwx.h>

#include "backends/proxy/socks_caps.h"
#include "util/util.h"

#include <uthash.h>
#include <uv.h>

typedef struct socks_client socks_client;
typedef struct socks_listener socks_listener;
typedef struct udp_port udp_port;
typedef struct udp_flow udp_flow;

/* UDP_PORT_ANSWER: a FWX_FLAG_REPLY_FROM_PEER permission, on the gateway socket address a
   published flow's upstream uses (udp.c, "answers from a new port"). */
enum { UDP_PORT_PUBLISH = 1, UDP_PORT_GRANT = 2, UDP_PORT_SOCKS = 3, UDP_PORT_ANSWER = 4 };

/* A UDP socket on the gateway facing outside peers, with its flows (udp.c). */
struct udp_port {
    uv_udp_t udp;
    struct pstate *st;
    int kind;
    uint64_t id;
    fwx_listen_spec spec; /* publishing */
    fwx_grant grant;      /* grants */
    struct sockaddr_storage local;
    bool accepting;      /* new peers are decided; false once a one-shot port has its peer */
    bool released;       /* its owner let go: closes with its last flow */
    bool closing;
    bool handle_closing;
    bool admitting;      /* a peer is being decided: the grant may go meanwhile, the socket stays */
    udp_flow *flows;
    unsigned n_flows;
    socks_client *socks; /* UDP ASSOCIATE: the control connection it belongs to */
    uint8_t buf[65536];
    udp_port *prev, *next;
};

typedef struct pstate pstate;
typedef struct fwx__socks_users fwx__socks_users; /* socks_auth.c */

typedef struct plisten {
    uv_poll_t poll; /* on fd: connections are taken with accept4, straight to the pump */
    int fd;
    pstate *st;
    uint64_t id;
    bool is_grant;
    fwx_listen_spec spec; /* publishing */
    fwx_grant grant;      /* grants */
    struct plisten *prev, *next;
} plisten;

typedef struct psession {
    IFWXSession *session; /* +1 */
    unsigned relays;
    UT_hash_handle hh;
} psession;

/* An IPv4 or IPv6 socket address in 28 bytes: a relay keeps three, one relay per relayed
   connection, and sockaddr_storage's 128 bytes each were a sixth of fwx's memory per idle
   connection (issue 12). */
typedef union paddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} paddr;

/* Copies an IPv4 or IPv6 address into d; anything else leaves d zero (AF_UNSPEC). */
static inline void fwx__paddr_set(paddr *d, const struct sockaddr *s)
{
    uint32_t n = s != NULL ? fwx__sa_len(s) : 0;
    memset(d, 0, sizeof *d);
    if (n > 0 && n <= sizeof *d)
        memcpy(d, s, n);
}

/* One per relayed connection: pointers first, flags last. The gateway's address towards the
   server is read once connected and handed on at once (on_connected, the core), not kept:
   232 bytes before, 200 now (a 208-byte heap chunk; issue 12, part 4). */
typedef struct prelay {
    pstate *st;
    IFWXConnection *conn;  /* +1 once admitted or opened */
    psession *ps;          /* publishing: the client's session, closed with its last relay */
    fwx_pump_connector *connector;  /* the connect under way on the relay reactor */
    fwx_pump *pump;
    /* Called when the upstream connect ends, before the pump starts (SOCKS writes its reply);
       up_local: the gateway's address towards the server, NULL if not known. */
    void (*on_connected)(struct prelay *r, int status, const struct sockaddr *up_local);
    UT_hash_handle hh_conn; /* in pstate.relay_by_conn while conn is set */
    struct prelay *prev, *next;
    int internal_fd;
    int external_fd;
    int up_fd;      /* the server side while connecting */
    paddr target;
    paddr source;   /* the client, for non-full-proxy publishing */
    bool transparent;
    bool need_up_local; /* read the local address even without a data filter (all but filterless publishing) */
    bool fresh; /* internal_fd came from our own accept4, no copy elsewhere (fwx_pump_start_fresh) */
    bool connecting;
    bool finished;
} prelay;
_Static_assert(sizeof(prelay) <= 200, "the relay grew: see issue 12 in bench/README.md");

typedef struct ppermission {
    fwx_grant grant;
} ppermission;

#define FWX__PROXY_MAGIC 0x70726f78u /* "prox": fwx_proxy_socks_listen checks the backend */

struct pstate {
    uint32_t magic;
    fwx_firewall *fw;
    uv_loop_t *loop;
    plisten *listeners;
    prelay *relays;
    psession *sessions;
    prelay *pending; /* the relay being admitted or opened, for the relay() call-back */
    unsigned udp_deciding; /* a UDP peer or destination of ours is being decided (udp.c, socks.c) */
    ppermission *perms;
    size_t n_perms, cap_perms;
    socks_listener *socks;   /* SOCKS5 listeners (socks.c) */
    udp_port *udp_ports;     /* UDP sockets facing outside peers (udp.c) */
    prelay *relay_by_conn;   /* kill() finds a relay by its connection in O(1) */
    udp_flow *flow_by_conn;  /* and a UDP flow likewise (udp.c) */
    uint64_t udp_idle_ms;    /* a UDP flow ends after this long without a datagram */
    socks_client *clients;   /* SOCKS5 clients still negotiating (socks.c) */
    fwx__socks_caps socks_caps; /* what SOCKS clients hold (socks_caps.c) */
    unsigned handles; /* libuv handles and relays still closing */
    bool closing;
    bool reactor_held; /* fwx_pump_reactor_hold taken at open, released at close */
    bool warned_transparent;
    fwx__socks_users *users; /* SOCKS credentials (RFC 1929), NULL: no authentication */
    int reserve_fd;          /* a spare descriptor for refusing when they run out (fdlimit.c) */
    fwx__logpace fd_pace;    /* out-of-descriptors lines, once a second (fdlimit.c) */
};

#define DLIST_ADD(head, x)                                                                        \
    do {                                                                                          \
        (x)->prev = NULL;                                                                         \
        (x)->next = (head);                                                                       \
        if (head)                                                                                 \
            (head)->prev = (x);                                                                   \
        (head) = (x);                                                                             \
    } while (0)
#define DLIST_DEL(head, x)                                                                        \
    do {                                                                                          \
        if ((x)->prev)                                                                            \
            (x)->prev->next = (x)->next;                                                          \
        else                                                                                      \
            (head) = (x)->next;                                                                   \
        if ((x)->next)                                                                            \
            (x)->next->prev = (x)->prev;                                                          \
        (x)->prev = (x)->next = NULL;                                                             \
    } while (0)


/* The backend itself (proxy.c): its SOCKS calls find their instance with
   fwx_firewall_backend_state_of(), also behind a wrapping backend. */
extern const fwx_backend fwx__proxy_backend;

void fwx__proxy_state_maybe_free(pstate *st);

/* Out of file descriptors (fdlimit.c). err: errno, or libuv's negative one. */
bool fwx__proxy_fd_short(int err);
/* Logs the shortage, once per burst (rate-limited); what: "accepting a client", ... */
void fwx__proxy_fd_shortage(pstate *st, int err, const char *what);
/* Makes the coming close of fd a reset. */
void fwx__proxy_fd_reset(int fd);
void fwx__proxy_reserve_open(pstate *st);
void fwx__proxy_reserve_close(pstate *st);
/* An accept callback's status < 0: if descriptors ran out, logs it and uses the reserve to
   take the waiting connections off the queue with a reset. */
void fwx__proxy_accept_failed(pstate *st, uv_stream_t *server, int status, const char *what);
/* The same for a listening fd of the backend's own. */
void fwx__proxy_accept_failed_fd(pstate *st, int lfd, int status, const char *what);
prelay *fwx__proxy_relay_new(pstate *st, int fd);
/* Gives the relay its connection (the reference passes) and indexes it for kill(). */
void fwx__proxy_relay_set_conn(prelay *r, IFWXConnection *conn);
/* Connects to r->target and relays, or (emulated connection) relays from the filter. */
void fwx__proxy_relay_connect(prelay *r);
/* Relays between r's client fd and an fd already connected (a SOCKS BIND's accepted peer). */
void fwx__proxy_relay_pump(prelay *r, int external_fd);
void fwx__proxy_relay_fail(prelay *r);
/* A session of its own for an explicit (SOCKS) client: ended with its last relay. */
/* user: the name the client authenticated with (SOCKS, RFC 1929), or NULL. */
psession *fwx__proxy_session_explicit(pstate *st, const struct sockaddr *client, const struct sockaddr *gw,
                                      const char *user);
void fwx__socks_users_free(fwx__socks_users *t);
/* True if password is user's (constant time in the hash). */
bool fwx__socks_users_verify(const fwx__socks_users *t, const char *user, const char *password);
void fwx__proxy_session_unref(pstate *st, psession *ps);
void fwx__proxy_socks_close_all(pstate *st);
/* The transparent (NAT) session of a client address, with a reference for the caller's relay. */
psession *fwx__proxy_session_nat(pstate *st, const struct sockaddr *client);

/* UDP (udp.c) */
udp_port *fwx__proxy_udp_port_open(pstate *st, int kind, const struct sockaddr *addr, uint32_t flags, fwx_result *hr);
void fwx__proxy_udp_port_release(udp_port *p, bool kill_flows);
udp_port *fwx__proxy_udp_port_find(pstate *st, uint64_t id);
bool fwx__proxy_udp_kill(pstate *st, IFWXConnection *conn);
void fwx__proxy_udp_close_all(pstate *st);
fwx_result fwx__proxy_udp_answer_open(pstate *st, const fwx_grant *g);
udp_flow *fwx__proxy_udp_flow_find(udp_port *p, const struct sockaddr *peer);
udp_flow *fwx__proxy_udp_flow_for(udp_port *p, const struct sockaddr *dst, IFWXConnection *conn);
void fwx__proxy_udp_flow_send(udp_flow *f, const uint8_t *data, size_t n);
/* SOCKS UDP ASSOCIATE (socks.c): a datagram from the client, a reply from a destination. */
void fwx__proxy_socks_udp_datagram(udp_port *p, const struct sockaddr *from, const uint8_t *data, size_t n);
void fwx__proxy_socks_udp_reply(udp_port *p, const struct sockaddr *dst, const uint8_t *data, size_t n);

#endif
