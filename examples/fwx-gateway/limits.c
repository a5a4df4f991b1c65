/*
 * fwx-gateway: the caps of the `gateway` group; see limits.h.
 * SPDX-License-Identifier: MIT
 */
#include "limits.h"

#include <stdio.h>
#include <string.h>

static int whole(const config_setting_t *e, unsigned max, unsigned *out)
{
    int v;
    if (config_setting_type(e) != CONFIG_TYPE_INT || (v = config_setting_get_int(e)) < 1 || (unsigned)v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int socks_limits(const config_setting_t *e, fwx_socks_limits *sl, char *msg, size_t msglen)
{
    static const char *names[] = {"connections_per_client", "binds_per_client", "udp_per_client",
                                  "pending_per_client",     "connections",      "binds",
                                  "udp",                    "pending"};
    uint32_t *fields[] = {&sl->connections_per_client, &sl->binds_per_client, &sl->udp_per_client,
                          &sl->pending_per_client,     &sl->connections,      &sl->binds,
                          &sl->udp,                    &sl->pending};
    if (!config_setting_is_group(e)) {
        snprintf(msg, msglen, "must be a group, such as { binds_per_client = 8; binds = 256; }");
        return -1;
    }
    for (int i = 0; i < config_setting_length(e); i++) {
        const config_setting_t *f = config_setting_get_elem(e, (unsigned)i);
        const char *n = config_setting_name(f);
        size_t j = 0;
        while (j < 8 && strcmp(names[j], n) != 0)
            j++;
        unsigned v;
        if (j == 8) {
            snprintf(msg, msglen, "unknown key \"%s\" (connections, binds, udp, pending, each also _per_client)", n);
            return -1;
        }
        if (whole(f, 1000000, &v) != 0) {
            snprintf(msg, msglen, "%s must be a whole number from 1 to 1000000", n);
            return -1;
        }
        *fields[j] = v;
    }
    /* The library refuses this too, but only when the gateway starts: say it at file:line. */
    fwx_socks_limits d;
    fwx_socks_limits_init(&d);
    const uint32_t dtot[4] = {d.connections, d.binds, d.udp, d.pending};
    for (int k = 0; k < 4; k++) {
        uint32_t pc = *fields[k], tot = *fields[k + 4] ? *fields[k + 4] : dtot[k];
        if (pc != 0 && pc > tot / 2) {
            snprintf(msg, msglen, "%s (%u) must be at most half of %s (%u here), so that one client cannot starve "
                     "the others", names[k], pc, names[k + 4], tot);
            return -1;
        }
    }
    return 0;
}

int gw_limits_parse(const char *k, const config_setting_t *e, gw_limits *l, char *msg, size_t msglen)
{
    if (strcmp(k, "max_permissions_per_client") == 0 || strcmp(k, "max_permissions") == 0) {
        unsigned v;
        if (whole(e, 10000000, &v) != 0) {
            snprintf(msg, msglen, "must be a whole number from 1 to 10000000");
            return -1;
        }
        *(strcmp(k, "max_permissions") == 0 ? &l->perms : &l->perms_per_client) = v;
        return 1;
    }
    if (strcmp(k, "socks_limits") == 0) {
        if (l->socks.struct_size == 0) {
            memset(&l->socks, 0, sizeof l->socks);
            l->socks.struct_size = sizeof l->socks;
        }
        return socks_limits(e, &l->socks, msg, msglen) == 0 ? 1 : -1;
    }
    return 0;
}

void gw_limits_options(const gw_limits *l, fwx_firewall_options *o)
{
    if (l->perms_per_client)
        o->max_permissions_per_session = l->perms_per_client;
    if (l->perms)
        o->max_permissions = l->perms;
}
