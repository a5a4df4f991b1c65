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
#include <stddef.h>
#include <uv.h>

#define TN_CLIENT "10.99.1.2"
#define TN_GW_IN "10.99.1.1"
#define TN_GW_OUT "10.99.2.1"
#define TN_SERVER "10.99.2.2"
#define TN_OTHER "10.99.2.3"
/* IPv6 beside them (tn_add_ipv6): ULA addresses inside the namespaces only. */
#define TN_CLIENT6 "fd99:1::2"
#define TN_GW_IN6 "fd99:1::1"
#define TN_GW_OUT6 "fd99:2::1"
#define TN_SERVER6 "fd99:2::2"

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
} tn_gw;
void tn_gw_up(tn_topo *t);
void tn_gw_options(fwx_firewall_options *o, const char *name);
void tn_gw_close(tn_gw *g);
/* IPv6 on a topology tn_up made: the TN_*6 addresses, default routes through the gateway, and
   forwarding on in it. tn_gw_options_ipv6: tn_gw_options with the gateway's IPv6 addresses too. */
void tn_add_ipv6(const tn_topo *t);
void tn_gw_options_ipv6(fwx_firewall_options *o, const char *name);
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
