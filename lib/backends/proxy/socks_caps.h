/*
 * fwx - caps on what one SOCKS client can hold. Internal to the proxy backend.
 *
 * A SOCKS client (one address) holds control connections, BIND listeners, UDP associations and
 * name look-ups; each kind has a per-client cap and a global cap. A per-client cap is at most
 * half its global cap (fwx_proxy_socks_set_limits refuses more), so a client at its cap always
 * leaves room for others; the global defaults follow the process's descriptor limit.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_PROXY_SOCKS_CAPS_H
#define FWX_PROXY_SOCKS_CAPS_H

#include <fwx/proxy.h>

#include "util/util.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum { FWX__SOCKS_CONN, FWX__SOCKS_BIND, FWX__SOCKS_UDP, FWX__SOCKS_PENDING, FWX__SOCKS_KINDS };

typedef struct fwx__socks_holder fwx__socks_holder; /* one client address's counts */

typedef struct fwx__socks_caps {
    bool ready;                          /* limits set (or defaulted) */
    uint32_t per_client[FWX__SOCKS_KINDS];
    uint32_t total[FWX__SOCKS_KINDS];
    /* What is held in all: this firewall's, or with shared listeners (several firewalls of
       the process, one per loop: fwx_firewall_options.listen_shared) the process's, so that a
       cap in all stays one cap for the gateway. A client's own counts stay per firewall: a
       client address reaches one loop. */
    atomic_uint in_use[FWX__SOCKS_KINDS];
    bool shared;
    fwx__logpace pace[FWX__SOCKS_KINDS]; /* refusals of each kind: said at warn once a second */
    fwx__socks_holder *buckets[64];
} fwx__socks_caps;

/* What one control connection holds: its client's entry and a count per kind. */
typedef struct fwx__socks_hold {
    fwx__socks_holder *h;
    uint8_t n[FWX__SOCKS_KINDS];
} fwx__socks_hold;

/* Takes one of kind for the client at addr. On refusal returns false and writes which cap
   refused (its config name and value) into why; *global tells whether the global cap did. */
bool fwx__socks_caps_take(fwx_firewall *fw, fwx__socks_caps *caps, fwx__socks_hold *hold,
                          const struct sockaddr *addr, int kind, char *why, size_t whylen, bool *global);
/* The level to log a refusal of kind at: warn at most once a second a kind (a flood of
   refusals must not flood the log), else debug; *quiet gets how many went at debug since the
   last warn line. */
fwx_log_level fwx__socks_caps_log_level(fwx__socks_caps *caps, int kind, uint32_t *quiet);
/* Gives back one of kind (if held). */
void fwx__socks_caps_put(fwx__socks_caps *caps, fwx__socks_hold *hold, int kind);
/* Gives back everything the connection holds. */
void fwx__socks_caps_put_all(fwx__socks_caps *caps, fwx__socks_hold *hold);

#endif
