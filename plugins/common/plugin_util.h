/*
 * fwx plugins - small helpers every filter plugin writes: socket-address ports and lengths, and
 * the text of a secondary-connection call's result for a log line. Header-only (static inline):
 * a plugin links nothing of libfwx, so it cannot use lib/util or fwx_strerror().
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_PLUGIN_UTIL_H
#define FWX_PLUGIN_UTIL_H

#include <fwx/fwx.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

/* The port of an IPv4 or IPv6 address, host order; 0 for another family. */
static inline uint16_t plugin_sa_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
    return 0;
}

/* Sets the port of an IPv4 or IPv6 address (host order given); nothing for another family. */
static inline void plugin_sa_set_port(struct sockaddr *sa, uint16_t port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)(void *)sa)->sin_port = htons(port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)(void *)sa)->sin6_port = htons(port);
}

/* The length of an IPv4 or IPv6 address, as the SDK calls want it. */
static inline uint32_t plugin_sa_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? (uint32_t)sizeof(struct sockaddr_in6) : (uint32_t)sizeof(struct sockaddr_in);
}

/* What a secondary-connection call (AllowFutureConnect, BindForClient, RedirectConnections)
   answered, for a log line. */
static inline const char *plugin_result_text(fwx_result hr)
{
    switch (hr) {
    case FWX_E_ADDRESS_NOT_ALLOWED: return "the core refused the address (FWX_E_ADDRESS_NOT_ALLOWED)";
    case FWX_E_ADDRNOTAVAIL: return "not an address of the gateway (FWX_E_ADDRNOTAVAIL)";
    case FWX_E_QUOTA_EXCEEDED: return "too many grants (FWX_E_QUOTA_EXCEEDED)";
    case FWX_E_NO_PORTS: return "no free gateway port (FWX_E_NO_PORTS)";
    case FWX_E_PROTOCOL_RULES_DENIED: return "the policy denies it (FWX_E_PROTOCOL_RULES_DENIED)";
    case FWX_E_SITE_AND_CONTENT_RULES_DENIED: return "the policy denies it (FWX_E_SITE_AND_CONTENT_RULES_DENIED)";
    case FWX_E_DUP_NAME: return "a grant for it exists (FWX_E_DUP_NAME)";
    case FWX_E_TERMINATING: return "the session is ending (FWX_E_TERMINATING)";
    case FWX_E_INVALIDARG: return "invalid argument (FWX_E_INVALIDARG)";
    case FWX_E_OUTOFMEMORY: return "out of memory (FWX_E_OUTOFMEMORY)";
    default: return "the core refused it";
    }
}

#endif /* FWX_PLUGIN_UTIL_H */
