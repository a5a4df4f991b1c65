/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/proxy.h
 * @brief What only the built-in "proxy" backend offers: its SOCKS5 forward mode.
 *
 * @page proxy_backend The proxy backend's own API
 * The calls here work on a firewall whose backend is "proxy" (fwx_firewall_set_backend());
 * with another backend, or none, they return FWX_E_NOT_SUPPORTED. They are the proxy
 * backend's features, not part of the backend interface (fwx/backend.h), which any backend
 * implements.
 *
 * These declarations were in fwx/backend.h up to 1.0; fwx/fwx.h includes this header, so a
 * program that includes fwx/fwx.h sees no change. Since 1.1 they live here (the SOCKS limits
 * and credentials were added in 1.1).
 *
 * Every call is [loop-thread] unless it says otherwise.
 * @since 1.1 (the header; fwx_proxy_socks_listen() itself since 1.0)
 */
#ifndef FWX_PROXY_H
#define FWX_PROXY_H

#include <fwx/host.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Opens a SOCKS5 listener (RFC 1928; no authentication unless fwx_proxy_socks_set_users()) on the firewall's "proxy" backend: the
 * forward mode, where explicit clients name their destinations. Each SOCKS connection is a
 * control channel with its own explicit (fwxSourceWSP) session. CONNECT is admitted by an
 * outstanding permission (AllowFutureConnect) or else decided as a new fwx_Connect_Tcp; BIND
 * is a client bind (fwx_Bind_Tcp) whose arrivals are discarded until a filter approves it with
 * IFWXSession::RetroactiveAllowBind; UDP ASSOCIATE gives the client a UDP relay port on the
 * gateway, where each new destination is decided once (an outstanding permission, or a new
 * fwx_Udp_Destination under the policy and the filters) and then relayed as a flow until the
 * control connection ends. A UDP ASSOCIATE that names its client by host name is refused with
 * reply 8 (address type not supported); datagrams that are fragments (FRAG != 0) or name a
 * host are dropped.
 * @param fw the firewall; its backend must be "proxy", or a backend that wraps it (fwx_firewall_backend_state_of()).
 * @param addr the address to listen on (borrowed). @param len its length.
 * @return FWX_S_OK, FWX_E_NOT_SUPPORTED (another backend, or none), FWX_E_INVALIDARG,
 *   FWX_E_ADDRINUSE, FWX_E_ADDRNOTAVAIL, FWX_E_BACKEND.
 */
FWX_API fwx_result fwx_proxy_socks_listen(fwx_firewall *fw, const struct sockaddr *addr, uint32_t len);

/**
 * Requires SOCKS5 username/password authentication (RFC 1929) on the firewall's SOCKS
 * listeners, with the credentials in @p path: one `user:hash` per line, the hash a crypt(3)
 * string (`openssl passwd -6`), `#` comments. The file must be a regular file that others can
 * neither read nor write. From then on a client is offered method 2 only (one that does not
 * offer it gets 0xFF), a wrong name or password gets status 1, one log line and the close, and
 * the name a client authenticated with is its session's user (fwx_session_params::user), which
 * policy rules with `users` match. Clients already past negotiation keep their sessions.
 * @param fw the firewall; its backend must be "proxy", or a backend that wraps it (fwx_firewall_backend_state_of()). @param path borrowed; NULL turns
 *   authentication off again.
 * @return FWX_S_OK, FWX_E_NOT_SUPPORTED (another backend), FWX_E_INVALIDARG (the file is
 *   unreadable, malformed or readable by others; logged with file:line).
 * [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_proxy_socks_set_users(fwx_firewall *fw, const char *path);

/**
 * Checks a credentials file for fwx_proxy_socks_set_users() without a firewall (for a
 * configuration check). [any-thread]
 * @param path the credentials file (borrowed).
 * @param err receives "" or the reason with file:line.
 * @param errlen the size of @p err.
 * @return FWX_S_OK, FWX_E_POINTER, FWX_E_INVALIDARG. @since 1.1
 */
FWX_API fwx_result fwx_proxy_socks_users_check(const char *path, char *err, size_t errlen);

/**
 * Caps on what SOCKS clients may hold at once, per client address and in all. A refusal is
 * answered in SOCKS (a connection over its cap gets method 0xFF, "no acceptable methods"; a
 * request over a per-client cap reply 2, "connection not allowed by ruleset"; over a global
 * cap reply 1, "general SOCKS server failure") and logged naming the client and the cap: at
 * warn at most once a second per kind of cap, the rest at debug (counted in the next warn line). Each per-client cap must be at most half its global cap, so that a client at its cap
 * never starves the others. An input struct (@ref struct_sizes); first size 36 bytes.
 * @since 1.1
 */
typedef struct fwx_socks_limits {
    /** The caller's sizeof(fwx_socks_limits); set by fwx_socks_limits_init(). */
    uint32_t struct_size;
    /** SOCKS control connections open per client address (negotiating, or holding a BIND or
        a UDP association; a CONNECT's relay no longer counts). Default 32. */
    uint32_t connections_per_client;
    /** BINDs waiting for their connection, per client address. Default 8. */
    uint32_t binds_per_client;
    /** UDP associations per client address. Default 8. */
    uint32_t udp_per_client;
    /** CONNECTs by host name being resolved, per client address. Default 4. */
    uint32_t pending_per_client;
    /** The same in all. Defaults: connections a quarter of the descriptor limit
        (RLIMIT_NOFILE) and at most 4096; binds and UDP associations an eighth, at most 1024;
        name look-ups 64. Each default is at least twice its per-client cap's default. */
    uint32_t connections;
    uint32_t binds;   /**< BINDs waiting, in all (see connections for the default). */
    uint32_t udp;     /**< UDP associations, in all. */
    uint32_t pending; /**< CONNECTs by host name being resolved, in all. */
} fwx_socks_limits;

/**
 * Fills the first @p struct_size bytes of @p limits with the defaults above (for this process's
 * descriptor limit) and sets its struct_size to @p struct_size. Call it through
 * fwx_socks_limits_init(). [any-thread]
 * @param limits the limits to fill (borrowed).
 * @param struct_size from the first size (36) to sizeof(fwx_socks_limits).
 * @return FWX_S_OK; FWX_E_POINTER; FWX_E_INVALIDARG (another size; nothing written).
 * @since 1.1
 */
FWX_API fwx_result fwx_socks_limits_init_sized(fwx_socks_limits *limits, uint32_t struct_size);

/**
 * Fills @p limits (a ::fwx_socks_limits *) with the defaults, as far as the caller's version of
 * the struct goes, and sets its struct_size. [any-thread] @since 1.1
 */
#define fwx_socks_limits_init(limits) ((void)fwx_socks_limits_init_sized((limits), (uint32_t)sizeof *(limits)))

/**
 * Sets the caps of the firewall's SOCKS listeners; clients already holding more keep what they
 * hold. [loop-thread]
 * @param fw the firewall; its backend must be "proxy", or a backend that wraps it (fwx_firewall_backend_state_of()).
 * @param limits borrowed; zero fields take their defaults.
 * @return FWX_S_OK, FWX_E_NOT_SUPPORTED (the backend neither is nor wraps "proxy"), FWX_E_INVALIDARG (NULL,
 *   a struct_size out of range, or a per-client cap over half its global cap; logged).
 * @since 1.1
 */
FWX_API fwx_result fwx_proxy_socks_set_limits(fwx_firewall *fw, const fwx_socks_limits *limits);

#ifdef __cplusplus
}
#endif

#endif /* FWX_PROXY_H */
