/*
 * fwx-gateway: the caps of the `gateway` group: outstanding
 * permissions (gateway.max_permissions_per_client, gateway.max_permissions) and what SOCKS
 * clients may hold (gateway.socks_limits). Kept apart from gateway.c's other keys.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_GATEWAY_LIMITS_H
#define FWX_GATEWAY_LIMITS_H

#include <fwx/fwx.h>
#include <libconfig.h>
#include <stddef.h>

typedef struct gw_limits {
    unsigned perms_per_client, perms; /* 0: the library's defaults */
    fwx_socks_limits socks;           /* zero fields: the library's defaults */
} gw_limits;

/* The keys gw_limits_parse() takes, for gateway.c's list of known keys. */
#define GW_LIMITS_KEYS "max_permissions_per_client", "max_permissions", "socks_limits"

/* Reads key k's setting e into l: 1 it was one of ours and fits, -1 it was ours and does not
   (msg says why), 0 not ours. */
int gw_limits_parse(const char *k, const config_setting_t *e, gw_limits *l, char *msg, size_t msglen);
/* Copies the permission caps into the firewall's options. */
void gw_limits_options(const gw_limits *l, fwx_firewall_options *o);

#endif
