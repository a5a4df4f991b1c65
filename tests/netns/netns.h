/*
 * fwx tests - three network namespaces joined by veth pairs, made and removed by the test:
 *
 *   client 10.99.1.2/24 ---- 10.99.1.1/24  gateway  10.99.2.1/24 ---- server 10.99.2.2/24
 *   (default via 10.99.1.1)                (ip_forward=1)             + 10.99.2.3/24 (a second
 *                                                                      host, for scope tests)
 *                                                                     (default via 10.99.2.1)
 *
 * Names are "fwxt-<runner pid>-<test pid>-{c,g,s}" so runs never collide and leftovers of a
 * killed run can be found. Interfaces live only inside the namespaces (created there by
 * `ip -n`); nothing in the host's own namespace is touched. Each topology is deleted by
 * tn_down, by an atexit handler in the test process (an assertion failure exits), and by the
 * runner at its start (dead runs) and end (its own).
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_TESTS_NETNS_H
#define FWX_TESTS_NETNS_H

#include <check.h>
#include <fwx/fwx.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#define TN_CLIENT "10.99.1.2"
#define TN_GW_IN "10.99.1.1"
#define TN_GW_OUT "10.99.2.1"
#define TN_SERVER "10.99.2.2"
#define TN_OTHER "10.99.2.3"

/* IPv6 beside the IPv4 addresses, when a test asks for it (tn_add_ipv6, tn_gw_begin): ULA
   addresses that exist inside the namespaces only. */
#define TN6_CLIENT "fd99:1::2"
#define TN6_GW_IN "fd99:1::1"
#define TN6_GW_OUT "fd99:2::1"
#define TN6_SERVER "fd99:2::2"

typedef struct tn_topo {
    char client[64], gateway[64], server[64];
    int client_fd, gateway_fd, server_fd; /* open namespace files */
    int up;
} tn_topo;

/* 0 when this process can make network namespaces; otherwise -1 and the reason in why. */
int tn_available(char *why, size_t len);
/* Deletes "fwxt-" namespaces whose runner is no longer running. */
void tn_cleanup_stale(void);
/* Deletes the namespaces of this runner's tests (call at the runner's end). */
void tn_cleanup_mine(void);
/*
 * A namespace runner's main: exits 77 (skipped), printing "SKIP: <what>: <reason>", when this
 * process cannot make namespaces; otherwise deletes stale namespaces, runs the suite made by
 * make_suite with tu_run_suite() and deletes its own. Returns the process exit code.
 */
int tn_main(Suite *(*make_suite)(void), const char *what);

/*
 * The gateway side of the fixture. tn_gw_up makes the topology and enters the gateway's
 * namespace (this thread stays there). tn_gw_options gives a firewall there its name, the
 * gateway's two addresses (TN_GW_IN, TN_GW_OUT), ports 40000-40999 and the log captured at
 * debug level (tu_fw_options); tn_gw_close closes the firewall and the loop clean, then deletes
 * the topology.
 */
typedef struct tn_gw {
    tn_topo topo;
    uv_loop_t loop;
    fwx_firewall *fw;
    char name[64];
    char table[80]; /* the nft backend's table for `name` (empty where libfwx has no nft backend) */
} tn_gw;
void tn_gw_up(tn_topo *t);
void tn_gw_options(fwx_firewall_options *o, const char *name);
void tn_gw_close(tn_gw *g);

/*
 * The one way the namespace suites make their gateway, in two halves so a suite can change the
 * options between them:
 * - tn_gw_begin: g zeroed, the topology (with tn_add_ipv6 when ipv6), this thread in the
 *   gateway's namespace, g->name "<tag><pid>" and g->table, and *o as tn_gw_options makes it
 *   (the gateway's two IPv6 addresses among its own too when ipv6);
 * - tn_gw_start: a firewall with o on g->loop, then, each when not NULL and each asserting
 *   FWX_S_OK, the plugin at path `plugin` loaded, the policy text set (so a backend compiles
 *   it at open) and the backend set.
 * tn_gw_open is both with the options as they come. tn_gw_close undoes them.
 */
void tn_gw_begin(tn_gw *g, const char *tag, bool ipv6, fwx_firewall_options *o);
void tn_gw_start(tn_gw *g, const fwx_firewall_options *o, const char *plugin, const char *policy,
                 const char *backend);
void tn_gw_open(tn_gw *g, const char *tag, bool ipv6, const char *plugin, const char *policy, const char *backend);

/* Gives the topology's namespaces the TN6_ addresses and IPv6 default routes, and turns IPv6
   forwarding on in the gateway's. */
void tn_add_ipv6(const tn_topo *t);

#if FWX_HAVE_NFT
/* Runs nft commands with libnftables in this thread's namespace (the gateway's, after
   tn_gw_up); fails the test with nft's error when they fail. */
void tn_nft_do(const char *cmds);
/* The numeric output of an nft command (`list table inet ...`) in this thread's namespace, or
   NULL when it failed. Static buffer, valid until the next call. */
const char *tn_nft_list(const char *what);
#endif
/* Makes the topology (aborts the test on failure) and registers its deletion at exit. */
void tn_up(tn_topo *t);
/* Deletes the topology; harmless twice. The calling thread must not be inside it any more
   (tn_up leaves the thread where it was; tn_enter moves it). */
void tn_down(tn_topo *t);
/* Moves the calling thread into the namespace open as nsfd. */
void tn_enter(int nsfd);
/* A socket made in the namespace open as nsfd; the calling thread stays where it is. */
int tn_socket_in(int nsfd, int domain, int type);
/* Runs a command through /bin/sh (ip found in /usr/sbin or /sbin); returns its exit status. */
int tn_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Peers in the namespaces. */
#include <netinet/in.h>
uint64_t tn_now_ms(void);
struct sockaddr_in tn_sin_of(const char *ip, uint16_t port);
int tn_listener_in(int nsfd, const char *ip, uint16_t port, uint16_t *bound);
int tn_connect_in(int nsfd, const char *src, const char *ip, uint16_t port, int ms);
int tn_accept_within(int lfd, int ms, struct sockaddr_in *peer);

#endif
