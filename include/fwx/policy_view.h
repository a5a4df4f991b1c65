/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/policy_view.h
 * @brief A read-only view of a loaded policy, for backends that compile it (kernel mode).
 *
 * @page policy_view The policy view
 * A ::fwx_policy is opaque. A backend that carries primary connections itself (the "nft"
 * backend compiles the policy into an nftables table) reads it through these calls: its
 * networks and the address ranges each owns, the relationships between networks, the address
 * sets, the protocol definitions and the ports they claim, and the access rules in file order.
 * Everything is what the core decides with (fwx-policy(5) says what each part means), already
 * resolved: names are indexes, overlapping ranges are flattened ("the smallest range wins"), so
 * a compiler never re-implements a rule of the loader.
 *
 * Rules of the view:
 * - Indexes run from 0 to the count; a call past the end returns FWX_S_FALSE (and zeroes its
 *   output), never an error, so a loop can stop on it.
 * - Strings and index arrays are borrowed from the policy: valid while it lives. The policy a
 *   firewall enforces (fwx_firewall_policy()) lives until fwx_firewall_set_policy() replaces
 *   it, which a backend hears of through fwx_backend::policy_changed.
 * - Info structs are output structs under the one rule of @ref struct_sizes "Struct sizes":
 *   set `struct_size` to `sizeof` your struct; the call fills no more than that and leaves it
 *   as you set it.
 * - Every call is [any-thread] on a policy nobody frees meanwhile (a policy is immutable once
 *   loaded).
 * @since 1.1
 */
#ifndef FWX_POLICY_VIEW_H
#define FWX_POLICY_VIEW_H

#include <fwx/host.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Networks every policy has, at these indexes (fwx-policy(5)). @since 1.1 */
enum {
    FWX_POLICY_NETWORK_INTERNAL = 0,  /**< "internal" */
    FWX_POLICY_NETWORK_EXTERNAL = 1,  /**< "external": also every address no network claims */
    FWX_POLICY_NETWORK_LOCALHOST = 2  /**< "localhost": the gateway itself */
};

/** How two networks are related (a network rule). @since 1.1 */
typedef enum fwx_policy_relationship {
    FWX_POLICY_RELATION_NONE = 0,  /**< no rule relates them: nothing passes between them */
    FWX_POLICY_RELATION_NAT = 1,   /**< source addresses are translated to the gateway's */
    FWX_POLICY_RELATION_ROUTE = 2, /**< routed, addresses kept */
    /** @cond */
    FWX__POLICY_RELATION_FORCE_32 = 0x7FFFFFFF
    /** @endcond */
} fwx_policy_relationship;

/** Direction of a protocol definition. @since 1.1 */
typedef enum fwx_policy_direction {
    FWX_POLICY_OUTBOUND = 1, /**< the client opens the connection */
    FWX_POLICY_INBOUND = 2,  /**< an external party opens it (publishing) */
    /** @cond */
    FWX__POLICY_DIRECTION_FORCE_32 = 0x7FFFFFFF
    /** @endcond */
} fwx_policy_direction;

/**
 * An inclusive range of addresses and what owns it (a network, or the address set asked for).
 * Ranges come sorted by `lo`, never overlapping. @since 1.1
 */
typedef struct fwx_policy_range {
    int32_t family;  /**< AF_INET or AF_INET6 */
    uint32_t owner;  /**< the network index (fwx_policy_network_range()), or the set's own index */
    uint8_t lo[16];  /**< first address, network byte order (IPv4: the first 4 bytes) */
    uint8_t hi[16];  /**< last address, the same way */
} fwx_policy_range;

/** An inclusive range of ports a protocol definition claims. Sorted by `lo`. @since 1.1 */
typedef struct fwx_policy_port_range {
    uint32_t protocol; /**< the protocol definition's index */
    uint16_t lo;       /**< first port */
    uint16_t hi;       /**< last port */
} fwx_policy_port_range;

/** A relationship between two networks. @since 1.1 */
typedef struct fwx_policy_relation {
    uint32_t from;                /**< the source network's index */
    uint32_t to;                  /**< the destination network's index */
    fwx_policy_relationship type; /**< NAT or ROUTE (NONE is never listed) */
} fwx_policy_relation;

/** A protocol definition. @since 1.1 */
typedef struct fwx_policy_protocol_info {
    uint32_t struct_size;           /**< sizeof your struct (@ref struct_sizes); first size 52 bytes */
    const char *name;               /**< its name (borrowed) */
    fwx_guid guid;                  /**< its GUID (what grants and listeners name) */
    int32_t ip_protocol;            /**< FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP */
    uint16_t port_lo;               /**< its primary port range, inclusive */
    uint16_t port_hi;               /**< the range's last port */
    fwx_policy_direction direction; /**< who opens its connections */
    uint32_t n_filters;             /**< filters bound to it: its connections must run through fwx */
    int32_t line;                   /**< where it is defined in the policy file */
} fwx_policy_protocol_info;

/** An access rule. Index arrays are borrowed from the policy, sorted, without duplicates. @since 1.1 */
typedef struct fwx_policy_rule_info {
    uint32_t struct_size;          /**< sizeof your struct (@ref struct_sizes); first size 108 bytes */
    const char *name;              /**< its name (borrowed) */
    int32_t line;                  /**< where it is in the policy file */
    int32_t allow;                 /**< nonzero: allow; 0: deny */
    int32_t all_protocols;         /**< nonzero: every protocol (then `protocols` is empty) */
    uint32_t n_users;              /**< users it is limited to (0: anyone); a kernel flow has none */
    const uint32_t *from_networks; /**< source networks (indexes) */
    uint32_t n_from_networks;      /**< their number */
    const uint32_t *from_sets;     /**< source address sets (indexes) */
    uint32_t n_from_sets;          /**< their number */
    const uint32_t *to_networks;   /**< destination networks */
    uint32_t n_to_networks;        /**< their number */
    const uint32_t *to_sets;       /**< destination address sets */
    uint32_t n_to_sets;            /**< their number */
    uint32_t n_to_domains;         /**< destination domain sets (a kernel flow has no host name) */
    const uint32_t *protocols;     /**< protocol definitions (indexes) */
    uint32_t n_protocols;          /**< their number */
} fwx_policy_rule_info;

/**
 * The policy the firewall enforces now, or NULL (none). Borrowed: see the rules above. A
 * backend reads it from policy_changed, open, or a later call such as listen. [loop-thread]
 * @since 1.1
 */
FWX_API const fwx_policy *fwx_firewall_policy(const fwx_firewall *fw);

/** The number of networks (the predefined ones first). 0 for NULL. @since 1.1 */
FWX_API uint32_t fwx_policy_network_count(const fwx_policy *p);

/** A network's name, or NULL past the end. @since 1.1 */
FWX_API const char *fwx_policy_network_name(const fwx_policy *p, uint32_t network);

/**
 * The @p index'th address range of @p family (AF_INET or AF_INET6) and the network that owns
 * it, after flattening: an address belongs to the smallest range that holds it. Addresses in
 * no range belong to FWX_POLICY_NETWORK_EXTERNAL.
 * @return FWX_S_OK; FWX_S_FALSE past the end; FWX_E_POINTER; FWX_E_INVALIDARG (family). @since 1.1
 */
FWX_API fwx_result fwx_policy_network_range(const fwx_policy *p, int32_t family, size_t index, fwx_policy_range *out);

/** The number of network relationships. @since 1.1 */
FWX_API size_t fwx_policy_relation_count(const fwx_policy *p);

/**
 * The @p index'th relationship (sorted by from, then to).
 * @return FWX_S_OK; FWX_S_FALSE past the end; FWX_E_POINTER. @since 1.1
 */
FWX_API fwx_result fwx_policy_relation_get(const fwx_policy *p, size_t index, fwx_policy_relation *out);

/** The number of address sets. @since 1.1 */
FWX_API uint32_t fwx_policy_address_set_count(const fwx_policy *p);

/** An address set's name, or NULL past the end. @since 1.1 */
FWX_API const char *fwx_policy_address_set_name(const fwx_policy *p, uint32_t set);

/**
 * The @p index'th range of address set @p set in @p family (`owner` is @p set).
 * @return FWX_S_OK; FWX_S_FALSE past the end; FWX_E_POINTER; FWX_E_INVALIDARG (set, family).
 * @since 1.1
 */
FWX_API fwx_result fwx_policy_address_set_range(const fwx_policy *p, uint32_t set, int32_t family, size_t index,
                                                fwx_policy_range *out);

/** The number of protocol definitions. @since 1.1 */
FWX_API uint32_t fwx_policy_protocol_count(const fwx_policy *p);

/**
 * Describes protocol definition @p protocol.
 * @return FWX_S_OK; FWX_S_FALSE past the end; FWX_E_POINTER; FWX_E_INVALIDARG (struct_size
 *   smaller than this release's struct). @since 1.1
 */
FWX_API fwx_result fwx_policy_protocol_get(const fwx_policy *p, uint32_t protocol, fwx_policy_protocol_info *out);

/**
 * Finds a protocol definition by GUID.
 * @param p the policy. @param guid the definition's GUID (borrowed).
 * @param index receives its index.
 * @return FWX_S_OK; FWX_E_NOT_FOUND; FWX_E_POINTER. @since 1.1
 */
FWX_API fwx_result fwx_policy_protocol_find(const fwx_policy *p, const fwx_guid *guid, uint32_t *index);

/**
 * The @p index'th port range the protocol definitions of @p ip_protocol (FWX_PROTOCOL_TCP or
 * _UDP) claim in @p direction, flattened as addresses are (the smallest range wins, ties to
 * the first defined).
 * @return FWX_S_OK; FWX_S_FALSE past the end; FWX_E_POINTER; FWX_E_INVALIDARG. @since 1.1
 */
FWX_API fwx_result fwx_policy_port_range_get(const fwx_policy *p, int32_t ip_protocol, fwx_policy_direction direction,
                                             size_t index, fwx_policy_port_range *out);

/** The number of access rules. @since 1.1 */
FWX_API uint32_t fwx_policy_rule_count(const fwx_policy *p);

/**
 * Describes access rule @p rule; rules are in file order, and the first that matches decides.
 * @return FWX_S_OK; FWX_S_FALSE past the end; FWX_E_POINTER; FWX_E_INVALIDARG (struct_size
 *   smaller than this release's struct). @since 1.1
 */
FWX_API fwx_result fwx_policy_rule_get(const fwx_policy *p, uint32_t rule, fwx_policy_rule_info *out);

#ifdef __cplusplus
}
#endif

#endif /* FWX_POLICY_VIEW_H */
