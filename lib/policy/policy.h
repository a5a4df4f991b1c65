/*
 * fwx - the policy engine: networks, relationships, protocol definitions, access rules and
 * server publishing rules, loaded from a configuration file. Internal; not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_POLICY_H
#define FWX_POLICY_H

#include "util/util.h"

typedef enum fwx__relationship {
    FWX__REL_NONE = 0,  /* no rule relates the two networks */
    FWX__REL_NAT = 1,   /* source addresses are translated */
    FWX__REL_ROUTE = 2, /* routed, addresses kept */
} fwx__relationship;

typedef enum fwx__direction {
    FWX__DIR_OUTBOUND = 1, /* the client (source) opens the connection */
    FWX__DIR_INBOUND = 2,  /* an external party opens it (publishing) */
} fwx__direction;

typedef struct fwx__network fwx__network;

/* One filter bound to a protocol: by its class id, or by its plugin's name
   (fwx_plugin_entry.name), whichever the file wrote. */
typedef struct fwx__filter_ref {
    fwx_guid guid; /* FWX_GUID_NULL when bound by name */
    char *name;    /* NULL when bound by guid */
    int line;
} fwx__filter_ref;

typedef struct fwx__protocol {
    char *name;
    fwx_guid guid;
    int32_t ip_protocol;        /* FWX_PROTOCOL_TCP / FWX_PROTOCOL_UDP */
    uint16_t port_lo, port_hi;  /* primary port range, inclusive */
    fwx__direction direction;
    fwx__filter_ref *filters;   /* the filters bound to it, in file order */
    size_t n_filters;
    /* Its connections' time limits in seconds (idle_timeout, handshake_timeout); 0 none, -1 not
       set: the firewall's default (fwx_firewall_set_timeouts). */
    int32_t idle_s, handshake_s;
    int line;                   /* where it was defined */
} fwx__protocol;

typedef struct fwx__publish_rule {
    char *name;
    const fwx__protocol *protocol;
    struct sockaddr_storage listen; /* gateway address:port */
    struct sockaddr_storage server; /* internal server address:port */
    bool full_proxy;
    int line;
} fwx__publish_rule;

typedef struct fwx__policy_request {
    int32_t ip_protocol;
    fwx__direction direction;
    const struct sockaddr *source;      /* canonical, port may be 0 */
    const struct sockaddr *destination; /* canonical, with port */
    const char *host_name;              /* may be NULL */
    const char *user;                   /* may be NULL */
    /* When set, the request is for this protocol definition (secondary connections of a
       protocol) rather than the one found by destination port. */
    const fwx_guid *protocol_guid;
    /* A connection to a publishing rule's listener, decided as going to the rule's server:
       the rule stands in for a network relationship (the gateway makes the connection to the
       server itself, as ISA's server publishing does across a NAT relationship). */
    bool published;
} fwx__policy_request;

typedef struct fwx__policy_decision {
    fwx_result result;                 /* FWX_S_OK or the denial code */
    const fwx__protocol *protocol;     /* the protocol definition used, or NULL */
    const char *rule_name;             /* the rule that decided, NULL for the default */
    int rule_line;                     /* its line in the file, 0 for the default */
    const fwx__network *source_network;
    const fwx__network *destination_network;
    fwx__relationship relationship;
} fwx__policy_decision;

/* The decision for one request. Never fails: out->result says allow or why not. */
void fwx__policy_decide(const fwx_policy *p, const fwx__policy_request *req, fwx__policy_decision *out);

/* The network an address belongs to (never NULL: "external" holds everything else). */
const fwx__network *fwx__policy_network_of(const fwx_policy *p, const struct sockaddr *addr);
const char *fwx__network_name(const fwx__network *n);

/* Protocol definitions. NULL when none. */
const fwx__protocol *fwx__policy_protocol_by_guid(const fwx_policy *p, const fwx_guid *guid);
const fwx__protocol *fwx__policy_protocol_by_port(const fwx_policy *p, int32_t ip_protocol, uint16_t port,
                                                  fwx__direction direction);
/* Whether the filter of class id `filter`, whose plugin is called `name`, is bound to proto. */
bool fwx__protocol_has_filter(const fwx__protocol *proto, const fwx_guid *filter, const char *name);
/* "{guid}" or "name", as the file wrote it; buf holds FWX_GUID_STRLEN. */
const char *fwx__filter_ref_fmt(const fwx__filter_ref *f, char *buf);
/* Index of proto in file order (its key path is protocols.[index]). */
size_t fwx__policy_protocol_index(const fwx_policy *p, const fwx__protocol *proto);
size_t fwx__policy_protocol_count(const fwx_policy *p);
const fwx__protocol *fwx__policy_protocol_at(const fwx_policy *p, size_t i);

/* Why a denial came out as it did, for one log line: who decided (the rule with its line, the
   default rule, or the network relationships), the reason, both networks and the protocol:
   `rule "no ftp" (line 31): access rules deny this protocol; internal -> external (nat),
   protocol "ftp"`. */
void fwx__policy_decision_fmt(const fwx__policy_decision *d, const fwx__policy_request *req, char *buf,
                              size_t size);

/* The file (or name) the policy was loaded from, for file:line in errors found after loading. */
const char *fwx__policy_source(const fwx_policy *p);

/* Server publishing rules, in file order. */
size_t fwx__policy_publish_count(const fwx_policy *p);
const fwx__publish_rule *fwx__policy_publish_at(const fwx_policy *p, size_t i);
/* The publishing rule whose listener a connection arrived on: the same server, and the same
   listen address when one is given (else the first rule for that server). NULL when none. */
const fwx__publish_rule *fwx__policy_publish_find(const fwx_policy *p, const struct sockaddr *listen,
                                                  const struct sockaddr *server);

#endif /* FWX_POLICY_H */
