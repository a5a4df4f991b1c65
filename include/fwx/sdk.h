/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/sdk.h
 * @brief The filter SDK: IFWX* interfaces, events, flags, in the shape of the ISA Server SDK.
 *
 * @page sdk The filter SDK
 * fwx re-creates the Firewall Extensibility SDK of ISA Server 2004 / Forefront TMG. A filter
 * (a plugin) implements ::IFWXFilter, ::IFWXSessionFilter and optionally ::IFWXDataFilter; the
 * core implements ::IFWXFirewall, ::IFWXSession, ::IFWXConnection and the rest.
 *
 * **Interfaces.** Each interface is a struct holding a const pointer to a table of function
 * pointers (`lpVtbl`). The first three entries are the IUnknown methods, then the interface's
 * own, in the order given here; that order is the ABI. The first parameter is the object itself
 * (`This`). `static inline` wrappers such as IFWXSession_AllowFutureConnect() make calls read
 * like the SDK's C examples. A released interface never changes: new methods go into a new
 * interface (`IFWXSession2`) with a new IID.
 *
 * **Reference counting** follows COM: objects are born with a count of 1; every pointer
 * parameter says whether it is *borrowed* (valid for the call only; AddRef to keep it) or a
 * *new reference* (+1, the receiver must Release it). QueryInterface always writes its out
 * pointer (NULL on failure). AddRef and Release return the new count.
 *
 * **Threads.** Everything runs on the firewall's libuv loop thread (see @ref threading).
 * Only AddRef and Release are [any-thread].
 *
 * **Addresses** are `struct sockaddr` pointers with an explicit length, IPv4 or IPv6.
 */
#ifndef FWX_SDK_H
#define FWX_SDK_H

#include <fwx/common.h>
#include <fwx/log.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <netinet/in.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------- */
/** @name Protocols */
/** @{ */
/** The secondary connection or socket uses TCP. Equal to IPPROTO_TCP. */
#define FWX_PROTOCOL_TCP 6
/** The secondary connection or socket uses UDP. Equal to IPPROTO_UDP. */
#define FWX_PROTOCOL_UDP 17
/** @} */

/* ---------------------------------------------------------------------------------------- */
/**
 * @name Event types (FwxFirewallEventType)
 * Bit flags: a filter hooks several by OR-ing them into FwxFilterHookEvents::dwGlobalEvents.
 * @{
 */
#define fwx_Connect_Tcp 0x00000001u          /**< an outbound TCP connection is being made */
#define fwx_Udp_Destination 0x00000002u      /**< UDP traffic to or from a new destination */
#define fwx_Bind_Tcp 0x00000004u             /**< a TCP bind (BindForClient, client bind) */
#define fwx_Bind_Udp 0x00000008u             /**< a UDP bind */
#define fwx_Listen 0x00000010u               /**< a bound TCP socket starts to listen */
#define fwx_AcceptedConnection 0x00000020u   /**< an inbound connection was accepted */
#define fwx_GetHostByName 0x00000040u        /**< explicit client name lookup (not raised by fwx 1.x) */
#define fwx_GetHostByAddr 0x00000080u        /**< explicit client address lookup (not raised by fwx 1.x) */
#define fwx_ConnectionTerminating 0x00000100u /**< a connection ends; delivered without registration */
#define fwx_EstablishedConnection 0x00000200u /**< a secondary connection asked for was made */
/** Every event type a filter may hook. */
#define FWX_EVENT_TYPE_MASK 0x000003FFu
/** @} */

/**
 * @name Event sources (FwxFirewallEventSource)
 * A filter hooks events per source. fwx calls a session "WSP" when an explicit client made it
 * (SOCKS, the proxy backend's forward mode: the Firewall Client's analogue) and "NAT" when the
 * client was intercepted transparently or reached a published server.
 * @{
 */
#define fwxSourceWSP 0x40000000u /**< explicit (Firewall Client style) sessions */
#define fwxSourceNAT 0x80000000u /**< transparent (SecureNAT style) sessions */
#define FWX_ALL_SOURCES (fwxSourceWSP | fwxSourceNAT) /**< both sources */
/** @} */

/**
 * @name Protocol sources (FwxFirewallEventProtocolSource)
 * @{
 */
/** Receive events for every protocol, not only those the policy binds to this filter. */
#define fwxAnyProtocol 0x01000000u
/**
 * Receive events for secondary connections too, not only primary ones: without it a filter
 * never sees the fwx_Bind_* events of BindForClient, nor any event of a connection admitted
 * through a filter's grant (see @ref hooks).
 */
#define fwxAssociatedProtocolsAllConnections 0x02000000u
/** @} */

/**
 * @page hooks Which events reach a filter
 * An event of a session reaches a filter only when every one of these holds, for the hooks in
 * force (FilterInit's FwxFilterHookEvents until the filter is attached to the session, then
 * what AttachToSession returned), each masked by fwx_plugin_entry::allowed_events:
 * 1. the event type's bit is set (fwx_Connect_Tcp, fwx_Bind_Tcp, ...);
 * 2. the session's source bit is set (fwxSourceNAT, fwxSourceWSP);
 * 3. **secondary connections need fwxAssociatedProtocolsAllConnections.** The events of a
 *    connection that a filter's secondary-connection call made possible are secondary
 *    (`IsSecondary` nonzero): the fwx_Bind_Tcp / fwx_Bind_Udp that IFWXSession::BindForClient
 *    raises for each port, fwx_Listen and fwx_AcceptedConnection on that port, and the
 *    fwx_Connect_Tcp / fwx_AcceptedConnection / fwx_Udp_Destination of a connection admitted by
 *    AllowFutureConnect or RedirectConnections. Without the bit a filter sees none of them
 *    (only a client's own bind, such as SOCKS BIND, is a primary fwx_Bind_Tcp);
 * 4. the protocol: with fwxAnyProtocol every protocol; without it only the protocols whose
 *    policy definition lists this filter (`filters = [...]`), or every protocol when the
 *    firewall has no policy.
 *
 * Two events need no hook: fwx_ConnectionTerminating reaches every filter attached to the
 * session, and fwx_EstablishedConnection reaches the session filter whose call asked for the
 * secondary connection. Hooks the manifest does not allow are dropped with a log line.
 */

/** Every bit that FwxFilterHookEvents::dwGlobalEvents may hold. */
#define FWX_HOOK_EVENTS_MASK                                                                      \
    (FWX_EVENT_TYPE_MASK | FWX_ALL_SOURCES | fwxAnyProtocol | fwxAssociatedProtocolsAllConnections)

/** The events a filter hooks: an OR of event types, sources and protocol sources. */
typedef struct FwxFilterHookEvents {
    uint32_t dwGlobalEvents; /**< event types | sources | protocol sources */
} FwxFilterHookEvents;

/* ---------------------------------------------------------------------------------------- */
/**
 * @name Connection flags (dwFlags of the secondary-connection calls)
 * Values are fwx's own (the SDK's are unpublished). Which call accepts which flag:
 *
 * | flag | AllowFutureConnect | BindForClient | RedirectConnections | RetroactiveAllowBind | SetDataFilterFactory |
 * |---|---|---|---|---|---|
 * | ADDRESS_BASED | yes | | | | yes |
 * | ALLOW_MULTIPLE | yes | yes | yes | | |
 * | TIMEOUT | yes | yes | yes | | |
 * | NO_KERNEL_MODE | yes | yes | yes | | |
 * | BIDIRECTIONAL (UDP only) | yes | yes | | yes | |
 * | PROXY_MODE | | yes | | | |
 * | ALLOW_ADDRESSES_* | yes | yes | | | |
 * | INCREASE_RECEIVE_BUFFER | yes | yes | yes | yes | |
 *
 * Any other flag makes the call fail with `FWX_E_INVALIDARG`, and so do TIMEOUT together with
 * ALLOW_MULTIPLE, and BIDIRECTIONAL with TCP.
 * @{
 */
/**
 * Tie the permission to the client's address rather than to the session: any session of the
 * same client address may use it (a client that opens a control channel per process or per
 * connection, as SOCKS clients do). Without it only the session that asked may (its explicit
 * flows, fwx_firewall_admit_in_session(); for a NAT session, the transparent flows of its
 * client). For SetDataFilterFactory: the factory applies to connections of every session of
 * the client address.
 */
#define FWX_FLAG_ADDRESS_BASED 0x00000001u
/** Allow more than one connection (by default exactly one is accepted). */
#define FWX_FLAG_ALLOW_MULTIPLE 0x00000002u
/** Expire the permission or listener when unused for the firewall's timeout (60 s by default). */
#define FWX_FLAG_TIMEOUT 0x00000004u
/** Carry the connection in user mode even when the kernel could carry it. */
#define FWX_FLAG_NO_KERNEL_MODE 0x00000008u
/** UDP only: replies from the destination are allowed back. */
#define FWX_FLAG_BIDIRECTIONAL 0x00000010u
/** BindForClient: source-NAT inbound connections to the gateway's address (full proxy mode). */
#define FWX_FLAG_PROXY_MODE 0x00000020u
/** Widen the address scope to the same /24 (IPv4) or /64 (IPv6) as the session's peer. */
#define FWX_FLAG_ALLOW_ADDRESSES_IN_CLASS_C_NETWORK 0x00000040u
/** Widen the address scope to the policy network of the session's peer. */
#define FWX_FLAG_ALLOW_ADDRESSES_IN_NETWORK 0x00000080u
/** Allow any address. Rationale: makes FTP bounce possible; never the default. */
#define FWX_FLAG_ALLOW_ADDRESSES_ALL 0x00000100u
/** Raise a UDP socket's receive buffer to 64 KiB. */
#define FWX_INCREASE_RECEIVE_BUFFER 0x00000200u
/**
 * AllowFutureConnect, UDP with FWX_FLAG_BIDIRECTIONAL only: the permission is for the answer of
 * pConnection's other party from a port it picks (a TFTP server's transfer port, RFC 1350).
 * Address must be the client's own end of pConnection, address and port (its external peer for
 * a published server's connection, its internal peer otherwise); the one flow admitted comes
 * from the address of the other party (the published server, or the external peer) with any
 * source port, to Address, and nobody else may use it (fwx_grant::sources names that address
 * alone). When the backend relays pConnection through a socket of its own, fwx_grant::gateway
 * is that socket's address and port, where the answer arrives. Not with ProxyExternalAddress,
 * FWX_FLAG_ADDRESS_BASED or the FWX_FLAG_ALLOW_ADDRESSES_* flags (FWX_E_INVALIDARG); a
 * connection whose client port is unknown is FWX_E_ADDRESS_NOT_ALLOWED. @since 1.1
 */
#define FWX_FLAG_REPLY_FROM_PEER 0x00000400u
/** @} */

/**
 * @name Session flags (IFWXSession::GetSessionFlags)
 * @{
 */
#define FWX_SESSION_NAT 0x00000001u           /**< transparent or routed, not an explicit client */
#define FWX_SESSION_PRIVATE 0x00000002u       /**< made by IFWXFirewall::CreatePrivateSession */
#define FWX_SESSION_AUTHENTICATED 0x00000004u /**< the user is authenticated */
#define FWX_SESSION_TERMINATED 0x00000008u    /**< the session has ended */
/** @} */

/**
 * @name Connection object flags (IFWXConnection::GetConnectionFlags)
 * @{
 */
/** Full proxy mode: inbound connections are source-NATed to the gateway (SDK value). */
#define FWX_CONNECTION_INTERNAL_ADDRESS_TRANSLATION 0x00000001u
/** fwx's own: the connection is carried by the kernel (no data filter can see it). */
#define FWX_CONNECTION_KERNEL_MODE 0x00000100u
/** fwx's own: a secondary connection (made through a permission, bound port or redirect). */
#define FWX_CONNECTION_SECONDARY 0x00000200u
/** fwx's own: a filter emulates this connection (it is the data source). */
#define FWX_CONNECTION_EMULATED 0x00000400u
/** fwx's own: a listening connection made by BindForClient or EmulateClientBind. */
#define FWX_CONNECTION_LISTENING 0x00000800u
/** fwx's own: the connection has been killed or has ended. */
#define FWX_CONNECTION_TERMINATED 0x00001000u
/** @} */

/** How the core and filters decided an event (FwxFilterAccess). Filters read it, never write it. */
typedef enum FwxFilterAccess {
    FWX_PASS = 0,    /**< no decision: allowed iff nobody denies and at least one party allows */
    FWX_ALLOW = 1,   /**< allowed (the policy or a filter allowed it) */
    FWX_DENY = 2,    /**< denied */
    FWX_EMULATE = 3, /**< a filter will implement the request itself */
    FWX__ACCESS_FORCE_32 = 0x7FFFFFFF
} FwxFilterAccess;

/**
 * Data-filter priority classes, in the order data meets them going from client to server.
 * Filters of the same class run in no particular order.
 */
typedef enum FwxDataFilterPriorityClass {
    fwx_dfpc_NAT = 0,   /**< SecureNAT editors: see client data first */
    fwx_dfpc_Internal,  /**< near the internal (client) side */
    fwx_dfpc_PostTrust, /**< after the trust boundary */
    fwx_dfpc_Middle,    /**< content scanners */
    fwx_dfpc_PreTrust,  /**< before the trust boundary */
    fwx_dfpc_External,  /**< near the external (server) side */
    fwx_dfpc_Emulation, /**< the filter is the data source (emulation) */
    fwx__dfpc_COUNT,
    fwx__dfpc_FORCE_32 = 0x7FFFFFFF
} FwxDataFilterPriorityClass;

/* ---------------------------------------------------------------------------------------- */
/* Forward declarations (each interface is documented where it is defined). */
/** @cond FWX_FORWARD_DECLARATIONS */
typedef struct IUnknown IUnknown;
typedef struct IClassFactory IClassFactory;
typedef struct IFWXFilter IFWXFilter;
typedef struct IFWXSessionFilter IFWXSessionFilter;
typedef struct IFWXDataFilter IFWXDataFilter;
typedef struct IFWXFirewall IFWXFirewall;
typedef struct IFWXSession IFWXSession;
typedef struct IFWXConnection IFWXConnection;
typedef struct IFWXFirewallAction IFWXFirewallAction;
typedef struct IFWXIpFilter IFWXIpFilter;
typedef struct IFWXIOBuffer IFWXIOBuffer;
typedef struct IFWXSocket IFWXSocket;
typedef struct IFWXNetworkSocket IFWXNetworkSocket;
typedef struct IFWXIOCompletion IFWXIOCompletion;
typedef struct IFWXAcceptCompletion IFWXAcceptCompletion;
typedef struct IFWXUdpDestination IFWXUdpDestination;
/** @endcond */

/* ---------------------------------------------------------------------------------------- */
/** @name Event payloads */
/** @{ */

/** fwx_Connect_Tcp and fwx_Bind_Tcp / fwx_Bind_Udp (FwxConnectEvent, FwxBindEvent). */
typedef struct FwxConnectEvent {
    struct sockaddr_storage Address; /**< connect: the destination; bind: the bound address */
    uint32_t AddressLength;          /**< length of the valid part of Address */
    IFWXConnection *piConnection;    /**< borrowed: the connection being decided */
    FwxFilterAccess FilterAccess;    /**< the decision so far (read only) */
    IUnknown *piPerRuleData;         /**< borrowed, may be NULL: data of the rule that matched */
    fwx_guid ProtocolGuid;           /**< the protocol, or FWX_GUID_NULL if unknown */
    int32_t IsSecondary;             /**< nonzero for a secondary connection */
} FwxConnectEvent;

/** fwx_Bind_Tcp / fwx_Bind_Udp: same layout as FwxConnectEvent. */
typedef FwxConnectEvent FwxBindEvent;

/** fwx_Udp_Destination. */
typedef struct FwxUdpDestinationEvent {
    struct sockaddr_storage Address; /**< the remote UDP address */
    uint32_t AddressLength;          /**< length of the valid part of Address */
    IFWXConnection *piConnection;    /**< borrowed: the UDP connection */
    FwxFilterAccess FilterAccess;    /**< the decision so far (read only) */
    IUnknown *piPerRuleData;         /**< borrowed, may be NULL */
    fwx_guid ProtocolGuid;           /**< the protocol */
    int32_t IsSecondary;             /**< nonzero for a secondary connection */
    IFWXUdpDestination *piUdpDestination; /**< borrowed: lets the handler deny the destination */
} FwxUdpDestinationEvent;

/** fwx_AcceptedConnection. */
typedef struct FwxAcceptEvent {
    struct sockaddr_storage RemoteAddress; /**< who connected */
    uint32_t RemoteAddressLength;          /**< length of RemoteAddress */
    struct sockaddr_storage LocalAddress;  /**< where they connected to */
    uint32_t LocalAddressLength;           /**< length of LocalAddress */
    IFWXConnection *piConnectionAccepted;  /**< borrowed: the accepted connection */
    FwxFilterAccess FilterAccess;          /**< the decision so far (read only) */
    IUnknown *piPerRuleData;               /**< borrowed, may be NULL */
    fwx_guid ProtocolGuid;                 /**< the protocol */
    int32_t IsSecondary;                   /**< nonzero for a secondary connection */
} FwxAcceptEvent;

/** fwx_Listen: a bound TCP socket starts to listen. Cannot be denied. */
typedef struct FwxListenEvent {
    struct sockaddr_storage Address; /**< the listening address (getsockname) */
    uint32_t AddressLength;          /**< length of Address */
    IFWXConnection *piConnection;    /**< borrowed: the listening connection */
    fwx_guid ProtocolGuid;           /**< the protocol */
} FwxListenEvent;

/** fwx_ConnectionTerminating. After the handler returns, keep no reference to the connection. */
typedef struct FwxEndConnectionEvent {
    IFWXConnection *piConnection; /**< borrowed: the connection that ends */
    fwx_guid ProtocolGuid;        /**< the protocol */
} FwxEndConnectionEvent;

/** fwx_EstablishedConnection: only for the filter that asked for it, with its context. */
typedef struct FwxEstablishedConnectionEvent {
    int32_t Protocol;             /**< FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP */
    IFWXConnection *piConnection; /**< borrowed: the new secondary connection */
    IUnknown *UserContext;        /**< borrowed: the punkContext given to the call, may be NULL */
} FwxEstablishedConnectionEvent;

/** An event delivered to IFWXSessionFilter::FirewallEventHandler. */
typedef struct FwxFirewallEvent {
    uint32_t StructSize;  /**< sizeof(FwxFirewallEvent) of the core that built it */
    uint32_t EventType;   /**< one fwx_* event type */
    uint32_t EventSource; /**< fwxSourceWSP or fwxSourceNAT */
    uint32_t Reserved;    /**< zero */
    /** The payload; which member is valid follows from EventType. */
    union {
        FwxConnectEvent Connect;                           /**< fwx_Connect_Tcp */
        FwxBindEvent Bind;                                 /**< fwx_Bind_Tcp, fwx_Bind_Udp */
        FwxUdpDestinationEvent UdpDest;                    /**< fwx_Udp_Destination */
        FwxAcceptEvent Accept;                             /**< fwx_AcceptedConnection */
        FwxListenEvent Listen;                             /**< fwx_Listen */
        FwxEndConnectionEvent EndConnect;                  /**< fwx_ConnectionTerminating */
        FwxEstablishedConnectionEvent EstablishedConnection; /**< fwx_EstablishedConnection */
    } Parameters;
} FwxFirewallEvent;
/** @} */

/* ---------------------------------------------------------------------------------------- */
/** Declares the three IUnknown entries of a vtable for interface @p T. */
#define FWX_IUNKNOWN_METHODS(T)                                                                   \
    /** Asks for another interface of the object. Writes NULL and returns FWX_E_NOINTERFACE   \
        if it has none; on success *ppv is a new reference (+1). [loop-thread] */                 \
    fwx_result (*QueryInterface)(T * This, const fwx_guid *riid, void **ppv);                     \
    /** Adds a reference. @return the new count. [any-thread] */                                 \
    uint32_t (*AddRef)(T * This);                                                                 \
    /** Drops a reference; the object is destroyed at 0. @return the new count. [any-thread] */ \
    uint32_t (*Release)(T * This)

/** Declares the three IUnknown call wrappers for interface @p T. */
#define FWX_IUNKNOWN_WRAPPERS(T)                                                                  \
    static inline fwx_result T##_QueryInterface(T *This, const fwx_guid *riid, void **ppv)        \
    {                                                                                             \
        return This->lpVtbl->QueryInterface(This, riid, ppv);                                     \
    }                                                                                             \
    static inline uint32_t T##_AddRef(T *This) { return This->lpVtbl->AddRef(This); }             \
    static inline uint32_t T##_Release(T *This) { return This->lpVtbl->Release(This); }

/* ---------------------------------------------------------------------------------------- */
/**
 * @name Interface ids
 * 16 bytes each, in text order; pass them to QueryInterface.
 */
/** @{ */
/** The interface id of ::IUnknown. */
static const fwx_guid IID_IUnknown = FWX_GUID_INIT(0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46);
/** The interface id of ::IClassFactory. */
static const fwx_guid IID_IClassFactory = FWX_GUID_INIT(0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46);
/** The interface id of ::IFWXFilter. */
static const fwx_guid IID_IFWXFilter = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x01);
/** The interface id of ::IFWXSessionFilter. */
static const fwx_guid IID_IFWXSessionFilter = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x02);
/** The interface id of ::IFWXDataFilter. */
static const fwx_guid IID_IFWXDataFilter = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x03);
/** The interface id of ::IFWXFirewall. */
static const fwx_guid IID_IFWXFirewall = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x04);
/** The interface id of ::IFWXSession. */
static const fwx_guid IID_IFWXSession = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x05);
/** The interface id of ::IFWXConnection. */
static const fwx_guid IID_IFWXConnection = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x06);
/** The interface id of ::IFWXFirewallAction. */
static const fwx_guid IID_IFWXFirewallAction = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x07);
/** The interface id of ::IFWXIpFilter. */
static const fwx_guid IID_IFWXIpFilter = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x08);
/** The interface id of ::IFWXIOBuffer. */
static const fwx_guid IID_IFWXIOBuffer = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x09);
/** The interface id of ::IFWXSocket. */
static const fwx_guid IID_IFWXSocket = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x0a);
/** The interface id of ::IFWXNetworkSocket. */
static const fwx_guid IID_IFWXNetworkSocket = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x0b);
/** The interface id of ::IFWXIOCompletion. */
static const fwx_guid IID_IFWXIOCompletion = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x0c);
/** The interface id of ::IFWXAcceptCompletion. */
static const fwx_guid IID_IFWXAcceptCompletion = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x0d);
/** The interface id of ::IFWXUdpDestination. */
/** IID of IFWXConnection2 (fwx 1.0). */
static const fwx_guid IID_IFWXConnection2 = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x01, 0x06);
/** IID of IFWXConnection3 (fwx 1.1). */
static const fwx_guid IID_IFWXConnection3 = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x01, 0x07);
/** IID of IFWXUdpDestination. */
static const fwx_guid IID_IFWXUdpDestination = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x00, 0x0e);
/** @} */

/* ---------------------------------------------------------------------------------------- */
/** @brief The base of every interface: identity and reference counting. */
typedef struct IUnknownVtbl {
    FWX_IUNKNOWN_METHODS(IUnknown);
} IUnknownVtbl;
/** An object of unknown type; used for opaque contexts (punkContext). */
struct IUnknown {
    const IUnknownVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IUnknown)

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief Creates data filters on demand; passed to IFWXSession::SetDataFilterFactory.
 * Implemented by filters. As in COM, there is no special factory interface.
 */
typedef struct IClassFactoryVtbl {
    FWX_IUNKNOWN_METHODS(IClassFactory);
    /**
     * Creates an object. The core calls it with @p pUnkOuter NULL and @p riid IID_IFWXDataFilter.
     * @param ppv receives a new reference (+1) or NULL. [loop-thread]
     * @return FWX_S_OK, FWX_E_NOINTERFACE, FWX_E_OUTOFMEMORY.
     */
    fwx_result (*CreateInstance)(IClassFactory *This, IUnknown *pUnkOuter, const fwx_guid *riid, void **ppv);
    /** Kept for COM's shape; fwx never calls it. Return FWX_S_OK. [loop-thread] */
    fwx_result (*LockServer)(IClassFactory *This, int32_t fLock);
} IClassFactoryVtbl;
/** A class factory. */
struct IClassFactory {
    const IClassFactoryVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IClassFactory)
/** Calls IClassFactoryVtbl::CreateInstance. */
static inline fwx_result IClassFactory_CreateInstance(IClassFactory *This, IUnknown *o, const fwx_guid *riid, void **ppv)
{
    return This->lpVtbl->CreateInstance(This, o, riid, ppv);
}
/** Calls IClassFactoryVtbl::LockServer. */
static inline fwx_result IClassFactory_LockServer(IClassFactory *This, int32_t fLock) { return This->lpVtbl->LockServer(This, fLock); }

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief The filter object: one per loaded plugin. Implemented by the filter.
 */
typedef struct IFWXFilterVtbl {
    FWX_IUNKNOWN_METHODS(IFWXFilter);
    /**
     * Called once after loading. Fill @p pFilterHookEvents with the events to hook (see
     * @ref hooks). [init-only] [state: loaded]
     * The filter may ask @p pIFWXFirewall for its ::IFWXHostLog here (QueryInterface).
     * @param pIFWXFirewall borrowed; AddRef to keep it (and Release it in FilterShutdown).
     * @param pFilterHookEvents borrowed; write the hooked events; zero on entry.
     * @return FWX_S_OK. Any failure refuses the plugin: fwx logs it and unloads the plugin
     *         without disturbing the plugins already loaded.
     */
    fwx_result (*FilterInit)(IFWXFilter *This, IFWXFirewall *pIFWXFirewall, FwxFilterHookEvents *pFilterHookEvents);
    /**
     * Called once when the plugin is unloaded or the firewall shuts down. Release the
     * IFWXFirewall kept from FilterInit. Session filters may still be detached after this
     * returns (the order of Detach and FilterShutdown is not defined); the plugin's code stays
     * mapped until the last of its objects is released. Also called after a FilterInit that
     * failed. [loop-thread] [state: shutting-down]
     * @return FWX_S_OK.
     */
    fwx_result (*FilterShutdown)(IFWXFilter *This);
    /**
     * Called on the first hooked event of a session, once per session (or earlier through
     * IFWXSession::AttachFilter). [loop-thread] [state: running]
     * @param piSession borrowed; AddRef to keep it, Release it in IFWXSessionFilter::Detach.
     * @param piSessionFilter receives a new reference (+1) to the session filter, or NULL
     *        when the filter does not want this session.
     * @param pFilterHookEvents in: the global events; out: the events for this session,
     *        which may be narrower or wider.
     * @return FWX_S_OK; FWX_E_OUTOFMEMORY (or any failure) fails the request that triggered it.
     */
    fwx_result (*AttachToSession)(IFWXFilter *This, IFWXSession *piSession, IFWXSessionFilter **piSessionFilter,
                                  FwxFilterHookEvents *pFilterHookEvents);
} IFWXFilterVtbl;
/** The filter object. */
struct IFWXFilter {
    const IFWXFilterVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXFilter)
/** Calls IFWXFilterVtbl::FilterInit. */
static inline fwx_result IFWXFilter_FilterInit(IFWXFilter *This, IFWXFirewall *fw, FwxFilterHookEvents *ev)
{
    return This->lpVtbl->FilterInit(This, fw, ev);
}
/** Calls IFWXFilterVtbl::FilterShutdown. */
static inline fwx_result IFWXFilter_FilterShutdown(IFWXFilter *This) { return This->lpVtbl->FilterShutdown(This); }
/** Calls IFWXFilterVtbl::AttachToSession. */
static inline fwx_result IFWXFilter_AttachToSession(IFWXFilter *This, IFWXSession *s, IFWXSessionFilter **sf,
                                                    FwxFilterHookEvents *ev)
{
    return This->lpVtbl->AttachToSession(This, s, sf, ev);
}

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief The per-session part of a filter. Implemented by the filter.
 */
typedef struct IFWXSessionFilterVtbl {
    FWX_IUNKNOWN_METHODS(IFWXSessionFilter);
    /**
     * Handles one event of this session (see @ref hooks for which). [loop-thread]
     * [state: attached] (the core stops calling it at Detach and at the filter's FilterShutdown)
     *
     * While the handler runs, and only then, it may decide the event: IFWXConnection::Deny,
     * IFWXConnection::AttachDataFilter (fwx_AcceptedConnection, fwx_Bind_Udp, fwx_Connect_Tcp,
     * fwx_Udp_Destination), IFWXConnection::EmulateForConnect (fwx_Connect_Tcp),
     * IFWXConnection::EmulateForBind (fwx_Bind_*).
     * @param pEvent borrowed, valid for the call only.
     * @return FWX_S_OK. A failure (such as FWX_E_OUTOFMEMORY) fails the request; a
     *         fwx_ConnectionTerminating event is still delivered for it. After Detach, a
     *         session filter should return FWX_E_TERMINATING.
     */
    fwx_result (*FirewallEventHandler)(IFWXSessionFilter *This, const FwxFirewallEvent *pEvent);
    /**
     * The session has ended or the filter is being unloaded: release every reference to the
     * session and its connections. The core then releases the session filter. [loop-thread]
     * [state: attached] (called once; it ends that state)
     * @return FWX_S_OK; a failure is logged.
     */
    fwx_result (*Detach)(IFWXSessionFilter *This);
} IFWXSessionFilterVtbl;
/** A session filter. */
struct IFWXSessionFilter {
    const IFWXSessionFilterVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXSessionFilter)
/** Calls IFWXSessionFilterVtbl::FirewallEventHandler. */
static inline fwx_result IFWXSessionFilter_FirewallEventHandler(IFWXSessionFilter *This, const FwxFirewallEvent *e)
{
    return This->lpVtbl->FirewallEventHandler(This, e);
}
/** Calls IFWXSessionFilterVtbl::Detach. */
static inline fwx_result IFWXSessionFilter_Detach(IFWXSessionFilter *This) { return This->lpVtbl->Detach(This); }

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief A filter that sits in a connection's data stream. Implemented by the filter.
 *
 * Who runs it: the backend that carries the connection in user mode (the "proxy" backend for
 * TCP and for every UDP flow it relays: published, bound and redirect ports, SOCKS UDP
 * ASSOCIATE), or, for a host without a backend, the host through fwx_connection_relay()
 * (host.h). A connection with data filters that nothing can run is refused
 * (FWX_E_NOT_SUPPORTED from fwx_connection_open() or fwx_firewall_admit(), and a log line):
 * a data filter is never skipped in silence.
 *
 * The chain: filters are ordered by ::FwxDataFilterPriorityClass, client side first. Each gets
 * an internal socket (towards the client, or the previous filter) and an external one (towards
 * the server, or the next filter). The rules of those sockets are listed at ::IFWXSocket.
 *
 * States: attached (AttachDataFilter took it) → running (SetSockets returned FWX_S_OK: it
 * pumps bytes with the sockets' Recv and Send, see ::IFWXSocket for their rules) → detached
 * (Detach: the connection ended or was killed). The core calls SetSockets at most once and
 * Detach exactly once, also when SetSockets was never called (the connection ended first);
 * completions of operations still pending at Detach may still arrive (failed) after it, so a
 * filter keeps its completion objects alive until their last Release.
 */
typedef struct IFWXDataFilterVtbl {
    FWX_IUNKNOWN_METHODS(IFWXDataFilter);
    /**
     * Starts the filter: from now on it pumps data with IFWXSocket::Recv and IFWXSocket::Send.
     * [loop-thread] [state: attached → running]
     * @param piInternalSocket borrowed; the client side. AddRef to keep it.
     * @param piExternalSocket borrowed; the server side, NULL when the filter emulates.
     * @param piConnection borrowed; the connection.
     * @param pFilterContext borrowed; the context given to AttachDataFilter, may be NULL.
     * @return FWX_S_OK; FWX_E_OUTOFMEMORY (or any failure) kills the connection.
     */
    fwx_result (*SetSockets)(IFWXDataFilter *This, IFWXSocket *piInternalSocket, IFWXSocket *piExternalSocket,
                             IFWXConnection *piConnection, IUnknown *pFilterContext);
    /** Stop: release the sockets and the connection. [loop-thread] [state: any → detached]
        @return FWX_S_OK. */
    fwx_result (*Detach)(IFWXDataFilter *This);
} IFWXDataFilterVtbl;
/** A data filter. */
struct IFWXDataFilter {
    const IFWXDataFilterVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXDataFilter)
/** Calls IFWXDataFilterVtbl::SetSockets. */
static inline fwx_result IFWXDataFilter_SetSockets(IFWXDataFilter *This, IFWXSocket *in, IFWXSocket *ex,
                                                   IFWXConnection *c, IUnknown *ctx)
{
    return This->lpVtbl->SetSockets(This, in, ex, c, ctx);
}
/** Calls IFWXDataFilterVtbl::Detach. */
static inline fwx_result IFWXDataFilter_Detach(IFWXDataFilter *This) { return This->lpVtbl->Detach(This); }

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief Completion of an asynchronous Recv, Send or SendTo. Implemented by the filter.
 */
typedef struct IFWXIOCompletionVtbl {
    FWX_IUNKNOWN_METHODS(IFWXIOCompletion);
    /**
     * Reports the end of one operation. [loop-thread]
     * @param fSuccess nonzero on success.
     * @param Win32ErrorCode 0, or the failure (a negative errno from libuv).
     * @param pIOBuffer borrowed: the buffer of the operation (for Recv(NULL) the core's own,
     *        which the filter must not modify).
     * @param UserData the value given to the operation.
     * @param ExternalAddress for UDP Recv only: the datagram's source (external socket) or
     *        target (internal socket); NULL otherwise.
     * @param ExternalAddressLength length of ExternalAddress.
     * @return FWX_S_OK.
     */
    fwx_result (*CompleteAsyncIO)(IFWXIOCompletion *This, int32_t fSuccess, int32_t Win32ErrorCode,
                                  IFWXIOBuffer *pIOBuffer, uintptr_t UserData, const struct sockaddr *ExternalAddress,
                                  uint32_t ExternalAddressLength);
} IFWXIOCompletionVtbl;
/** An I/O completion. */
struct IFWXIOCompletion {
    const IFWXIOCompletionVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXIOCompletion)
/** Calls IFWXIOCompletionVtbl::CompleteAsyncIO. */
static inline fwx_result IFWXIOCompletion_CompleteAsyncIO(IFWXIOCompletion *This, int32_t ok, int32_t err,
                                                          IFWXIOBuffer *b, uintptr_t ud, const struct sockaddr *a,
                                                          uint32_t alen)
{
    return This->lpVtbl->CompleteAsyncIO(This, ok, err, b, ud, a, alen);
}

/**
 * @brief Completion of IFWXNetworkSocket::Accept. Implemented by the filter.
 */
typedef struct IFWXAcceptCompletionVtbl {
    FWX_IUNKNOWN_METHODS(IFWXAcceptCompletion);
    /**
     * Reports an accepted connection or a failed accept. [loop-thread]
     * @param piListeningSocket borrowed.
     * @param piAcceptedSocket new reference (+1) on success, NULL on failure.
     * @return FWX_S_OK.
     */
    fwx_result (*CompleteAsyncAccept)(IFWXAcceptCompletion *This, int32_t fSuccess, int32_t Win32ErrorCode,
                                      IFWXNetworkSocket *piListeningSocket, IFWXNetworkSocket *piAcceptedSocket,
                                      const struct sockaddr *RemoteAddress, uint32_t RemoteAddressLength,
                                      const struct sockaddr *LocalAddress, uint32_t LocalAddressLength,
                                      uintptr_t UserData);
} IFWXAcceptCompletionVtbl;
/** An accept completion. */
struct IFWXAcceptCompletion {
    const IFWXAcceptCompletionVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXAcceptCompletion)
/** Calls IFWXAcceptCompletionVtbl::CompleteAsyncAccept. */
static inline fwx_result IFWXAcceptCompletion_CompleteAsyncAccept(IFWXAcceptCompletion *This, int32_t ok, int32_t err,
                                                                  IFWXNetworkSocket *ls, IFWXNetworkSocket *as,
                                                                  const struct sockaddr *r, uint32_t rl,
                                                                  const struct sockaddr *l, uint32_t ll, uintptr_t ud)
{
    return This->lpVtbl->CompleteAsyncAccept(This, ok, err, ls, as, r, rl, l, ll, ud);
}

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief A buffer for socket I/O. Implemented by the core (IFWXFirewall::CreateBuffer).
 *
 * A buffer has an allocated size and a data size (the valid bytes). Send/SendTo/Recv hold a
 * reference until the completion returns; a buffer that was sent must not change until it is
 * released.
 */
typedef struct IFWXIOBufferVtbl {
    FWX_IUNKNOWN_METHODS(IFWXIOBuffer);
    /**
     * The bytes and the data size. [loop-thread]
     * @param ppBuffer receives a pointer into the buffer (borrowed, valid while referenced).
     * @param pdwDataSize receives the data size.
     * @return FWX_S_OK, FWX_E_POINTER.
     */
    fwx_result (*GetBufferAndSize)(IFWXIOBuffer *This, uint8_t **ppBuffer, uint32_t *pdwDataSize);
    /** Sets the data size. [loop-thread] @return FWX_S_OK, FWX_E_INVALIDARG if larger than allocated,
        FWX_E_NOT_SUPPORTED on a core-allocated receive buffer (Recv(NULL)), which is read-only. */
    fwx_result (*SetDataSize)(IFWXIOBuffer *This, uint32_t dwDataSize);
    /**
     * Appends bytes after the data. [loop-thread]
     * @return FWX_S_OK, FWX_E_BUFFERFULL when they do not fit (nothing is appended), FWX_E_POINTER,
     *   FWX_E_NOT_SUPPORTED on a read-only receive buffer.
     */
    fwx_result (*Append)(IFWXIOBuffer *This, const void *pData, uint32_t dwSize);
    /**
     * Copies up to @p dwSize bytes of data from @p dwOffset into @p pDest. [loop-thread]
     * @param pdwRead receives the count copied (0 at or past the end).
     * @return FWX_S_OK, FWX_E_POINTER.
     */
    fwx_result (*ReadAt)(IFWXIOBuffer *This, uint32_t dwOffset, void *pDest, uint32_t dwSize, uint32_t *pdwRead);
    /**
     * Appends this buffer's data to @p pTarget (borrowed). [loop-thread]
     * @return FWX_S_OK, FWX_E_BUFFERFULL (nothing copied), FWX_E_POINTER, or what the target's
     *   Append returns (FWX_E_NOT_SUPPORTED for a read-only receive buffer).
     */
    fwx_result (*SendToBuffer)(IFWXIOBuffer *This, IFWXIOBuffer *pTarget);
    /** The allocated and data sizes. [loop-thread] @return FWX_S_OK, FWX_E_POINTER. */
    fwx_result (*GetBufferSizes)(IFWXIOBuffer *This, uint32_t *pdwAllocated, uint32_t *pdwDataSize);
} IFWXIOBufferVtbl;
/** An I/O buffer. */
struct IFWXIOBuffer {
    const IFWXIOBufferVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXIOBuffer)
/** Calls IFWXIOBufferVtbl::GetBufferAndSize. */
static inline fwx_result IFWXIOBuffer_GetBufferAndSize(IFWXIOBuffer *This, uint8_t **p, uint32_t *n)
{
    return This->lpVtbl->GetBufferAndSize(This, p, n);
}
/** Calls IFWXIOBufferVtbl::SetDataSize. */
static inline fwx_result IFWXIOBuffer_SetDataSize(IFWXIOBuffer *This, uint32_t n) { return This->lpVtbl->SetDataSize(This, n); }
/** Calls IFWXIOBufferVtbl::Append. */
static inline fwx_result IFWXIOBuffer_Append(IFWXIOBuffer *This, const void *p, uint32_t n)
{
    return This->lpVtbl->Append(This, p, n);
}
/** Calls IFWXIOBufferVtbl::ReadAt. */
static inline fwx_result IFWXIOBuffer_ReadAt(IFWXIOBuffer *This, uint32_t off, void *p, uint32_t n, uint32_t *got)
{
    return This->lpVtbl->ReadAt(This, off, p, n, got);
}
/** Calls IFWXIOBufferVtbl::SendToBuffer. */
static inline fwx_result IFWXIOBuffer_SendToBuffer(IFWXIOBuffer *This, IFWXIOBuffer *t) { return This->lpVtbl->SendToBuffer(This, t); }
/** Calls IFWXIOBufferVtbl::GetBufferSizes. */
static inline fwx_result IFWXIOBuffer_GetBufferSizes(IFWXIOBuffer *This, uint32_t *a, uint32_t *d)
{
    return This->lpVtbl->GetBufferSizes(This, a, d);
}

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief A set of IP address ranges. Implemented by the core (IFWXFirewall::CreateIpFilter).
 *
 * Used to restrict who may connect to a bound port or socket. Ranges of both families may be
 * mixed. An address is included when it lies in an included range or filter and in no
 * excluded one.
 */
typedef struct IFWXIpFilterVtbl {
    FWX_IUNKNOWN_METHODS(IFWXIpFilter);
    /**
     * Includes the addresses from @p First to @p Last (inclusive, same family; ports and IPv6
     * scope ids ignored). A v4-mapped address (\::ffff:a.b.c.d) is the IPv4 address, and the
     * v4-mapped part of an IPv6 range is that IPv4 range. [loop-thread]
     * @return FWX_S_OK, FWX_E_INVALIDARG (families differ, First > Last, bad length),
     *   FWX_E_POINTER, FWX_E_OUTOFMEMORY (the filter is unchanged).
     */
    fwx_result (*IncludeRange)(IFWXIpFilter *This, const struct sockaddr *First, uint32_t FirstLength,
                               const struct sockaddr *Last, uint32_t LastLength);
    /** Excludes a range; same rules as IncludeRange. [loop-thread] */
    fwx_result (*ExcludeRange)(IFWXIpFilter *This, const struct sockaddr *First, uint32_t FirstLength,
                               const struct sockaddr *Last, uint32_t LastLength);
    /** Includes every address @p pOther includes (copied now; @p pOther may be @p This). [loop-thread]
        @return FWX_S_OK; FWX_E_INVALIDARG (@p pOther is not the core's implementation: only a
        filter from IFWXFirewall::CreateIpFilter can be read); FWX_E_POINTER; FWX_E_OUTOFMEMORY. */
    fwx_result (*IncludeFilter)(IFWXIpFilter *This, IFWXIpFilter *pOther);
    /** Excludes every address @p pOther includes (copied now). [loop-thread]
        @return as IncludeFilter. */
    fwx_result (*ExcludeFilter)(IFWXIpFilter *This, IFWXIpFilter *pOther);
    /** [loop-thread] @return FWX_S_OK if @p Address is included, FWX_S_FALSE if not, FWX_E_INVALIDARG,
        FWX_E_POINTER. */
    fwx_result (*IsIncluded)(IFWXIpFilter *This, const struct sockaddr *Address, uint32_t AddressLength);
    /** [loop-thread] @return FWX_S_OK if both include the same addresses, FWX_S_FALSE if not;
        FWX_E_INVALIDARG (@p pOther is not the core's implementation); FWX_E_POINTER;
        FWX_E_OUTOFMEMORY. */
    fwx_result (*Compare)(IFWXIpFilter *This, IFWXIpFilter *pOther);
    /** A copy. [loop-thread] @param ppClone receives a new reference (+1).
        @return FWX_S_OK, FWX_E_OUTOFMEMORY, FWX_E_POINTER. */
    fwx_result (*Clone)(IFWXIpFilter *This, IFWXIpFilter **ppClone);
} IFWXIpFilterVtbl;
/** An IP filter. */
struct IFWXIpFilter {
    const IFWXIpFilterVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXIpFilter)
/** Calls IFWXIpFilterVtbl::IncludeRange. */
static inline fwx_result IFWXIpFilter_IncludeRange(IFWXIpFilter *This, const struct sockaddr *f, uint32_t fl,
                                                   const struct sockaddr *l, uint32_t ll)
{
    return This->lpVtbl->IncludeRange(This, f, fl, l, ll);
}
/** Calls IFWXIpFilterVtbl::ExcludeRange. */
static inline fwx_result IFWXIpFilter_ExcludeRange(IFWXIpFilter *This, const struct sockaddr *f, uint32_t fl,
                                                   const struct sockaddr *l, uint32_t ll)
{
    return This->lpVtbl->ExcludeRange(This, f, fl, l, ll);
}
/** Calls IFWXIpFilterVtbl::IncludeFilter. */
static inline fwx_result IFWXIpFilter_IncludeFilter(IFWXIpFilter *This, IFWXIpFilter *o) { return This->lpVtbl->IncludeFilter(This, o); }
/** Calls IFWXIpFilterVtbl::ExcludeFilter. */
static inline fwx_result IFWXIpFilter_ExcludeFilter(IFWXIpFilter *This, IFWXIpFilter *o) { return This->lpVtbl->ExcludeFilter(This, o); }
/** Calls IFWXIpFilterVtbl::IsIncluded. */
static inline fwx_result IFWXIpFilter_IsIncluded(IFWXIpFilter *This, const struct sockaddr *a, uint32_t l)
{
    return This->lpVtbl->IsIncluded(This, a, l);
}
/** Calls IFWXIpFilterVtbl::Compare. */
static inline fwx_result IFWXIpFilter_Compare(IFWXIpFilter *This, IFWXIpFilter *o) { return This->lpVtbl->Compare(This, o); }
/** Calls IFWXIpFilterVtbl::Clone. */
static inline fwx_result IFWXIpFilter_Clone(IFWXIpFilter *This, IFWXIpFilter **o) { return This->lpVtbl->Clone(This, o); }

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief Cancels what a secondary-connection call set up. Implemented by the core.
 *
 * Returned by AllowFutureConnect, RedirectConnections and SetDataFilterFactory. The action
 * cancels itself after its one use (unless ALLOW_MULTIPLE), on timeout, and when the session
 * ends; Cancel after that is harmless.
 */
typedef struct IFWXFirewallActionVtbl {
    FWX_IUNKNOWN_METHODS(IFWXFirewallAction);
    /** Withdraws the permission now. [loop-thread] @return FWX_S_OK, or FWX_S_FALSE if it was already gone. */
    fwx_result (*Cancel)(IFWXFirewallAction *This);
} IFWXFirewallActionVtbl;
/** A firewall action. */
struct IFWXFirewallAction {
    const IFWXFirewallActionVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXFirewallAction)
/** Calls IFWXFirewallActionVtbl::Cancel. */
static inline fwx_result IFWXFirewallAction_Cancel(IFWXFirewallAction *This) { return This->lpVtbl->Cancel(This); }

/* ---------------------------------------------------------------------------------------- */
/** @brief Lets a fwx_Udp_Destination handler refuse the destination. Implemented by the core. */
typedef struct IFWXUdpDestinationVtbl {
    FWX_IUNKNOWN_METHODS(IFWXUdpDestination);
    /**
     * Refuses traffic to or from the destination of the event. [loop-thread]
     * @return FWX_S_OK; FWX_E_INVALIDARG if @p Reserved is not 0; FWX_E_BAD_CONTEXT outside the handler.
     */
    fwx_result (*Deny)(IFWXUdpDestination *This, uint32_t Reserved);
} IFWXUdpDestinationVtbl;
/** A UDP destination. */
struct IFWXUdpDestination {
    const IFWXUdpDestinationVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXUdpDestination)
/** Calls IFWXUdpDestinationVtbl::Deny. */
static inline fwx_result IFWXUdpDestination_Deny(IFWXUdpDestination *This, uint32_t r) { return This->lpVtbl->Deny(This, r); }

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief A socket of a connection, as a data filter sees it. Implemented by the core.
 *
 * The rules a data filter relies on (the user-mode data path keeps them for every socket it
 * hands out, real or joining two filters):
 * - **Completions never arrive synchronously.** Send, SendTo, Recv, Shutdown and Close return
 *   first; each pending operation's IFWXIOCompletion::CompleteAsyncIO runs later from the loop,
 *   in the order the operations ended. A filter may therefore start the next Recv from inside a
 *   completion without recursing.
 * - **End of stream is a zero-length completion**: a Recv that completes with fSuccess nonzero
 *   and a buffer whose data size is 0 means the peer will send nothing more (it shut down or
 *   closed); every later Recv on that socket completes the same way. A failed completion
 *   (fSuccess 0) carries the error in Win32ErrorCode (a negative errno, such as UV_ECANCELED
 *   for operations a Close cancelled).
 * - **One Recv at a time** per socket; Recv(NULL) receives into a buffer the core allocates
 *   (the connection's buffer size, IFWXConnection::SetBufferSize), which the filter may read
 *   but not modify. Sends are queued in order; a Send completes once every byte was taken.
 * - **A filter must Close (or Shutdown) its sockets** when it is done with them, at the latest
 *   when a direction reached end of stream and it has passed that on: the connection ends only
 *   when both real sockets are finished (closed, failed, or at end of stream and shut down for
 *   writing). To pass end of stream on, Shutdown(SHUT_WR) the other socket after the last Send;
 *   it takes effect once the queued sends are done. Close or Shutdown before the last Release.
 * - **UDP**: one Send is one datagram, one Recv takes one whole datagram. A datagram larger than
 *   the receive buffer (Recv(NULL): IFWXConnection::SetBufferSize, 4096 bytes by default) is
 *   dropped, never cut, and counted (fwx_firewall_datagrams_dropped()); the Recv stays pending.
 *   A socket queues up to 64 datagrams while no Recv is pending. Real UDP sockets have no end
 *   of stream: the flow ends when it idles out (the firewall's timeout) or the connection is
 *   killed, and then the filter is detached.
 * - Once the connection has ended, the methods answer FWX_E_TERMINATING (Close: FWX_S_OK) and
 *   the objects live until the filter's last Release. Buffers and completions given to an
 *   operation are referenced until its completion returns.
 */
#define FWX_ISOCKET_METHODS(T)                                                                     \
    /** Sends the data of @p pBuffer. [loop-thread]                                             \
        @param pBuffer borrowed; referenced until the completion returns. @param pCompletion    \
        borrowed, may be NULL (no notification). @return FWX_S_OK (pending), FWX_E_TERMINATING, \
        FWX_E_INVALIDARG. */                                                                      \
    fwx_result (*Send)(T * This, IFWXIOBuffer * pBuffer, IFWXIOCompletion * pCompletion, uintptr_t UserData); \
    /** Sends a datagram. On an external socket @p Address is the target, on an internal socket \
        the source the client should see. On a connection's own sockets (SetSockets) each side  \
        has one peer, and SendTo is Send. [loop-thread] @return as Send. */                       \
    fwx_result (*SendTo)(T * This, IFWXIOBuffer * pBuffer, const struct sockaddr *Address, uint32_t AddressLength, \
                         IFWXIOCompletion *pCompletion, uintptr_t UserData);                      \
    /** Receives into @p pBuffer, or into a buffer the core allocates when NULL. [loop-thread]  \
        @param pCompletion borrowed, required. One receive may be pending at a time.            \
        @return FWX_S_OK (pending), FWX_E_POINTER, FWX_E_TERMINATING, FWX_E_INVALIDARG (a       \
        receive is already pending). */                                                                     \
    fwx_result (*Recv)(T * This, IFWXIOBuffer * pBuffer, IFWXIOCompletion * pCompletion, uintptr_t UserData); \
    /** Shuts down sending (@p How = SHUT_WR), receiving (SHUT_RD) or both (SHUT_RDWR).        \
        [loop-thread] @return FWX_S_OK, FWX_E_INVALIDARG. */                                      \
    fwx_result (*Shutdown)(T * This, int32_t How);                                                \
    /** Closes the socket; pending operations complete with failure. [loop-thread]            \
        @return FWX_S_OK. */                                                                      \
    fwx_result (*Close)(T * This)

/** The socket methods. */
typedef struct IFWXSocketVtbl {
    FWX_IUNKNOWN_METHODS(IFWXSocket);
    FWX_ISOCKET_METHODS(IFWXSocket);
} IFWXSocketVtbl;
/** A socket. */
struct IFWXSocket {
    const IFWXSocketVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXSocket)
/** Calls IFWXSocketVtbl::Send. */
static inline fwx_result IFWXSocket_Send(IFWXSocket *This, IFWXIOBuffer *b, IFWXIOCompletion *c, uintptr_t ud)
{
    return This->lpVtbl->Send(This, b, c, ud);
}
/** Calls IFWXSocketVtbl::SendTo. */
static inline fwx_result IFWXSocket_SendTo(IFWXSocket *This, IFWXIOBuffer *b, const struct sockaddr *a, uint32_t l,
                                           IFWXIOCompletion *c, uintptr_t ud)
{
    return This->lpVtbl->SendTo(This, b, a, l, c, ud);
}
/** Calls IFWXSocketVtbl::Recv. */
static inline fwx_result IFWXSocket_Recv(IFWXSocket *This, IFWXIOBuffer *b, IFWXIOCompletion *c, uintptr_t ud)
{
    return This->lpVtbl->Recv(This, b, c, ud);
}
/** Calls IFWXSocketVtbl::Shutdown. */
static inline fwx_result IFWXSocket_Shutdown(IFWXSocket *This, int32_t how) { return This->lpVtbl->Shutdown(This, how); }
/** Calls IFWXSocketVtbl::Close. */
static inline fwx_result IFWXSocket_Close(IFWXSocket *This) { return This->lpVtbl->Close(This); }

/**
 * @brief A socket a filter opens itself (IFWXFirewall::CreateNetworkSocket). Implemented by the
 * core. Starts with the IFWXSocket methods, so it can be used as an IFWXSocket.
 */
typedef struct IFWXNetworkSocketVtbl {
    FWX_IUNKNOWN_METHODS(IFWXNetworkSocket);
    FWX_ISOCKET_METHODS(IFWXNetworkSocket);
    /** Connects. [loop-thread] @return FWX_S_OK (pending; completes through Recv/Send), FWX_E_CONNREFUSED, FWX_E_INVALIDARG. */
    fwx_result (*Connect)(IFWXNetworkSocket *This, const struct sockaddr *Address, uint32_t AddressLength);
    /** Binds; @p pIpFilter (borrowed, may be NULL) restricts who may connect or send. [loop-thread]
        @return FWX_S_OK, FWX_E_ADDRINUSE, FWX_E_ADDRNOTAVAIL, FWX_E_INVALIDARG. */
    fwx_result (*Bind)(IFWXNetworkSocket *This, const struct sockaddr *Address, uint32_t AddressLength,
                       IFWXIpFilter *pIpFilter);
    /** The local address. [loop-thread] @param AddressLength in: buffer size; out: length. @return FWX_S_OK, FWX_E_INVALIDARG. */
    fwx_result (*GetSockName)(IFWXNetworkSocket *This, struct sockaddr *Address, uint32_t *AddressLength);
    /** The remote address. [loop-thread] @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_WSAEINVAL if not connected. */
    fwx_result (*GetPeerName)(IFWXNetworkSocket *This, struct sockaddr *Address, uint32_t *AddressLength);
    /** Listens. [loop-thread] @return FWX_S_OK, FWX_E_WSAEINVAL if not bound. */
    fwx_result (*Listen)(IFWXNetworkSocket *This, int32_t Backlog);
    /** setsockopt(2). [loop-thread] @return FWX_S_OK, FWX_E_INVALIDARG. */
    fwx_result (*SetSockOpt)(IFWXNetworkSocket *This, int32_t Level, int32_t OptName, const void *OptVal, uint32_t OptLen);
    /** getsockopt(2). [loop-thread] @return FWX_S_OK, FWX_E_INVALIDARG. */
    fwx_result (*GetSockOpt)(IFWXNetworkSocket *This, int32_t Level, int32_t OptName, void *OptVal, uint32_t *OptLen);
    /** Accepts one connection asynchronously. [loop-thread] @param pCompletion borrowed, required. @return FWX_S_OK (pending), FWX_E_WSAEINVAL. */
    fwx_result (*Accept)(IFWXNetworkSocket *This, IFWXAcceptCompletion *pCompletion, uintptr_t UserData);
    /** Replaces the IP filter (borrowed; NULL lifts the restriction). [loop-thread] @return FWX_S_OK. */
    fwx_result (*SetIpFilter)(IFWXNetworkSocket *This, IFWXIpFilter *pIpFilter);
    /** The IP filter: a new reference (+1), or NULL if unrestricted. [loop-thread] @return FWX_S_OK. */
    fwx_result (*GetIpFilter)(IFWXNetworkSocket *This, IFWXIpFilter **ppIpFilter);
} IFWXNetworkSocketVtbl;
/** A network socket. */
struct IFWXNetworkSocket {
    const IFWXNetworkSocketVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXNetworkSocket)
/** Calls IFWXNetworkSocketVtbl::Connect. */
static inline fwx_result IFWXNetworkSocket_Connect(IFWXNetworkSocket *This, const struct sockaddr *a, uint32_t l)
{
    return This->lpVtbl->Connect(This, a, l);
}
/** Calls IFWXNetworkSocketVtbl::Bind. */
static inline fwx_result IFWXNetworkSocket_Bind(IFWXNetworkSocket *This, const struct sockaddr *a, uint32_t l, IFWXIpFilter *f)
{
    return This->lpVtbl->Bind(This, a, l, f);
}
/** Calls IFWXNetworkSocketVtbl::Listen. */
static inline fwx_result IFWXNetworkSocket_Listen(IFWXNetworkSocket *This, int32_t backlog) { return This->lpVtbl->Listen(This, backlog); }
/** Calls IFWXNetworkSocketVtbl::Accept. */
static inline fwx_result IFWXNetworkSocket_Accept(IFWXNetworkSocket *This, IFWXAcceptCompletion *c, uintptr_t ud)
{
    return This->lpVtbl->Accept(This, c, ud);
}
/** Calls IFWXNetworkSocketVtbl::Close. */
static inline fwx_result IFWXNetworkSocket_Close(IFWXNetworkSocket *This) { return This->lpVtbl->Close(This); }
/** Calls IFWXNetworkSocketVtbl::Send. */
static inline fwx_result IFWXNetworkSocket_Send(IFWXNetworkSocket *This, IFWXIOBuffer *b, IFWXIOCompletion *c, uintptr_t ud)
{
    return This->lpVtbl->Send(This, b, c, ud);
}
/** Calls IFWXNetworkSocketVtbl::SendTo. */
static inline fwx_result IFWXNetworkSocket_SendTo(IFWXNetworkSocket *This, IFWXIOBuffer *b, const struct sockaddr *a,
                                                  uint32_t l, IFWXIOCompletion *c, uintptr_t ud)
{
    return This->lpVtbl->SendTo(This, b, a, l, c, ud);
}
/** Calls IFWXNetworkSocketVtbl::Recv. */
static inline fwx_result IFWXNetworkSocket_Recv(IFWXNetworkSocket *This, IFWXIOBuffer *b, IFWXIOCompletion *c, uintptr_t ud)
{
    return This->lpVtbl->Recv(This, b, c, ud);
}
/** Calls IFWXNetworkSocketVtbl::Shutdown. */
static inline fwx_result IFWXNetworkSocket_Shutdown(IFWXNetworkSocket *This, int32_t how) { return This->lpVtbl->Shutdown(This, how); }
/** Calls IFWXNetworkSocketVtbl::GetSockName. */
static inline fwx_result IFWXNetworkSocket_GetSockName(IFWXNetworkSocket *This, struct sockaddr *a, uint32_t *l)
{
    return This->lpVtbl->GetSockName(This, a, l);
}
/** Calls IFWXNetworkSocketVtbl::GetPeerName. */
static inline fwx_result IFWXNetworkSocket_GetPeerName(IFWXNetworkSocket *This, struct sockaddr *a, uint32_t *l)
{
    return This->lpVtbl->GetPeerName(This, a, l);
}
/** Calls IFWXNetworkSocketVtbl::SetSockOpt. */
static inline fwx_result IFWXNetworkSocket_SetSockOpt(IFWXNetworkSocket *This, int32_t level, int32_t name, const void *v,
                                                      uint32_t len)
{
    return This->lpVtbl->SetSockOpt(This, level, name, v, len);
}
/** Calls IFWXNetworkSocketVtbl::GetSockOpt. */
static inline fwx_result IFWXNetworkSocket_GetSockOpt(IFWXNetworkSocket *This, int32_t level, int32_t name, void *v,
                                                      uint32_t *len)
{
    return This->lpVtbl->GetSockOpt(This, level, name, v, len);
}
/** Calls IFWXNetworkSocketVtbl::SetIpFilter. */
static inline fwx_result IFWXNetworkSocket_SetIpFilter(IFWXNetworkSocket *This, IFWXIpFilter *f) { return This->lpVtbl->SetIpFilter(This, f); }
/** Calls IFWXNetworkSocketVtbl::GetIpFilter. */
static inline fwx_result IFWXNetworkSocket_GetIpFilter(IFWXNetworkSocket *This, IFWXIpFilter **f) { return This->lpVtbl->GetIpFilter(This, f); }

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief What the core offers every filter. Implemented by the core; passed to FilterInit.
 *
 * Its QueryInterface also hands out, as new objects bound to the calling plugin (@since 1.1):
 * ::IFWXHostLog (IID_IFWXHostLog), the plugin's log, and ::IFWXTimer (IID_IFWXTimer), a new
 * one-shot timer each time it is asked.
 */
typedef struct IFWXFirewallVtbl {
    FWX_IUNKNOWN_METHODS(IFWXFirewall);
    /**
     * A socket for the filter's own use, not bound to a user and not subject to policy.
     * [loop-thread] @param Protocol FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP.
     * @param ppSocket receives a new reference (+1).
     * @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_NOT_SUPPORTED when the backend has no sockets.
     */
    fwx_result (*CreateNetworkSocket)(IFWXFirewall *This, int32_t Protocol, IFWXNetworkSocket **ppSocket);
    /**
     * A buffer of @p dwSize bytes (1 byte to 16 MiB), data size 0. [loop-thread]
     * @param ppBuffer receives a new reference (+1). @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_OUTOFMEMORY.
     */
    fwx_result (*CreateBuffer)(IFWXFirewall *This, uint32_t dwSize, IFWXIOBuffer **ppBuffer);
    /** An empty IP filter. [loop-thread] @param ppIpFilter new reference (+1). @return FWX_S_OK, FWX_E_OUTOFMEMORY. */
    fwx_result (*CreateIpFilter)(IFWXFirewall *This, IFWXIpFilter **ppIpFilter);
    /**
     * The transparent (NAT) session of a client address, created if there is none. The port
     * is ignored. [loop-thread] @param ppSession new reference (+1).
     * @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_OUTOFMEMORY, FWX_E_TERMINATING (firewall closing).
     */
    fwx_result (*GetClientSession)(IFWXFirewall *This, const struct sockaddr *ClientAddress, uint32_t ClientAddressLength,
                                   IFWXSession **ppSession);
    /**
     * A private session the filter owns, for connections it makes on a client's behalf.
     * [loop-thread]
     *
     * The session ends when its last reference goes: its connections are killed (each with
     * fwx_ConnectionTerminating), everything it set up (permissions, bound and redirect ports,
     * factories) is withdrawn and its session filters are detached, as fwx_session_close()
     * does. References the core holds do not count: one per connection object of the session
     * (even one the caller still holds; it is then terminated) and those a session filter took
     * in AttachToSession. Every other AddRef, and IFWXConnection::GetSession's, does.
     * fwx_session_close() may end it earlier.
     * @param ProxyInternalAddress the gateway address the client talks to, or NULL.
     * @param pUser reserved, must be NULL (authentication is not part of fwx 1.x).
     * @param ppSession new reference (+1): the only one, so its release ends the session.
     * @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_OUTOFMEMORY, FWX_E_TERMINATING.
     */
    fwx_result (*CreatePrivateSession)(IFWXFirewall *This, const struct sockaddr *ClientAddress, uint32_t ClientAddressLength,
                                       const struct sockaddr *ProxyInternalAddress, uint32_t ProxyInternalAddressLength,
                                       IUnknown *pUser, IFWXSession **ppSession);
} IFWXFirewallVtbl;
/** The firewall. */
struct IFWXFirewall {
    const IFWXFirewallVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXFirewall)
/** Calls IFWXFirewallVtbl::CreateNetworkSocket. */
static inline fwx_result IFWXFirewall_CreateNetworkSocket(IFWXFirewall *This, int32_t p, IFWXNetworkSocket **s)
{
    return This->lpVtbl->CreateNetworkSocket(This, p, s);
}
/** Calls IFWXFirewallVtbl::CreateBuffer. */
static inline fwx_result IFWXFirewall_CreateBuffer(IFWXFirewall *This, uint32_t n, IFWXIOBuffer **b)
{
    return This->lpVtbl->CreateBuffer(This, n, b);
}
/** Calls IFWXFirewallVtbl::CreateIpFilter. */
static inline fwx_result IFWXFirewall_CreateIpFilter(IFWXFirewall *This, IFWXIpFilter **f) { return This->lpVtbl->CreateIpFilter(This, f); }
/** Calls IFWXFirewallVtbl::GetClientSession. */
static inline fwx_result IFWXFirewall_GetClientSession(IFWXFirewall *This, const struct sockaddr *a, uint32_t l, IFWXSession **s)
{
    return This->lpVtbl->GetClientSession(This, a, l, s);
}
/** Calls IFWXFirewallVtbl::CreatePrivateSession. */
static inline fwx_result IFWXFirewall_CreatePrivateSession(IFWXFirewall *This, const struct sockaddr *c, uint32_t cl,
                                                           const struct sockaddr *p, uint32_t pl, IUnknown *u,
                                                           IFWXSession **s)
{
    return This->lpVtbl->CreatePrivateSession(This, c, cl, p, pl, u, s);
}

/* ---------------------------------------------------------------------------------------- */
/** The interface id of ::IFWXHostLog. @since 1.1 */
static const fwx_guid IID_IFWXHostLog = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x10, 0x01);
/** ::IFWXHostLog (declared here: it follows IFWXFirewall, which hands it out). */
typedef struct IFWXHostLog IFWXHostLog;

/**
 * @brief A plugin's way to log through the host. Implemented by the core. @since 1.1
 *
 * A plugin gets its own from the firewall it was given in FilterInit:
 * @code
 * IFWXHostLog *log = NULL;
 * IFWXFirewall_QueryInterface(pIFWXFirewall, &IID_IFWXHostLog, (void **)&log);  // in FilterInit
 * ...
 * fwx_log_field f[] = { FWX_LOG_FIELD_STRING("command", "PORT") };
 * IFWXHostLog_Logf(log, FWX_LOG_WARN, session, connection, f, 1, "refused: %s", why);
 * ...
 * IFWXHostLog_Release(log);                                                       // in FilterShutdown
 * @endcode
 * QueryInterface for IID_IFWXHostLog on IFWXFirewall gives a new reference (+1) to a log object
 * bound to the plugin whose call is running (FilterInit, or any other call the core makes into
 * the plugin), so every line names that plugin; asked outside any plugin call (by a host), the
 * object logs as the core. It holds a reference on the firewall: release it in FilterShutdown,
 * as the firewall itself. A host older than 1.1 answers FWX_E_NOINTERFACE: a plugin that wants
 * to run there falls back to its own output.
 *
 * Each line goes to the host's sink (see @ref logging): a text sink gets
 * `<plugin name>: <message>`; a record sink gets that text plus the fields, the core's first
 * (`plugin`, and from @p pSession / @p pConnection: `session`, `client`, `connection`, `peer`)
 * then the plugin's own. Rationale: a plugin that writes to stderr breaks a host's log format
 * (one JSON object a line) and loses the host's levels and timestamps; a plugin that formats
 * session and connection itself cannot give the host fields it can filter on.
 */
typedef struct IFWXHostLogVtbl {
    FWX_IUNKNOWN_METHODS(IFWXHostLog);
    /**
     * Whether a line at @p Level would reach the sink now, so that a plugin can skip formatting
     * debug lines. [loop-thread]
     * @return 1 if it would, 0 if not.
     */
    int32_t (*IsEnabled)(IFWXHostLog *This, fwx_log_level Level);
    /**
     * Logs one line. [loop-thread] (from the plugin's FilterInit until its FilterShutdown
     * returns; afterwards FWX_E_TERMINATING)
     * @param Level the line's level.
     * @param pSession the session it is about, or NULL (borrowed). Must be the core's.
     * @param pConnection the connection it is about, or NULL (borrowed). Must be the core's;
     *        its session is used when @p pSession is NULL.
     * @param Fields the plugin's own fields, or NULL (borrowed; see ::fwx_log_field for keys).
     *        A key the core already set on this line (`session`, ...) is dropped.
     * @param nFields number of entries in @p Fields (at most 32).
     * @param Message the text, without a trailing newline (borrowed, UTF-8); cut at 1000 bytes.
     * @return FWX_S_OK; FWX_S_FALSE when the level is filtered out (nothing was logged);
     *         FWX_E_POINTER (@p Message NULL, or @p Fields NULL with @p nFields > 0);
     *         FWX_E_INVALIDARG (a level out of range, a bad key or field type, more than 32
     *         fields, a session or connection not the core's); FWX_E_TERMINATING when the
     *         plugin has been unloaded (its lines would name a plugin that is gone).
     */
    fwx_result (*Log)(IFWXHostLog *This, fwx_log_level Level, IFWXSession *pSession, IFWXConnection *pConnection,
                      const fwx_log_field *Fields, uint32_t nFields, const char *Message);
} IFWXHostLogVtbl;
/** The host's log, for a plugin. @since 1.1 */
struct IFWXHostLog {
    const IFWXHostLogVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXHostLog)
/** Calls IFWXHostLogVtbl::IsEnabled. */
static inline int32_t IFWXHostLog_IsEnabled(IFWXHostLog *This, fwx_log_level l) { return This->lpVtbl->IsEnabled(This, l); }
/** Calls IFWXHostLogVtbl::Log. */
static inline fwx_result IFWXHostLog_Log(IFWXHostLog *This, fwx_log_level l, IFWXSession *s, IFWXConnection *c,
                                         const fwx_log_field *f, uint32_t n, const char *msg)
{
    return This->lpVtbl->Log(This, l, s, c, f, n, msg);
}
#if defined(__GNUC__)
__attribute__((format(printf, 7, 8)))
#endif
/**
 * Formats the message with vsnprintf (at most 1000 bytes, cut beyond) and calls
 * IFWXHostLogVtbl::Log. Skips the formatting when the level is filtered out (FWX_S_FALSE).
 */
static inline fwx_result IFWXHostLog_Logf(IFWXHostLog *This, fwx_log_level l, IFWXSession *s, IFWXConnection *c,
                                          const fwx_log_field *f, uint32_t n, const char *fmt, ...)
{
    char msg[1001];
    va_list ap;
    if (!This->lpVtbl->IsEnabled(This, l))
        return FWX_S_FALSE;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return This->lpVtbl->Log(This, l, s, c, f, n, msg);
}

/* ---------------------------------------------------------------------------------------- */
/** The interface id of ::IFWXTimer. @since 1.1 */
static const fwx_guid IID_IFWXTimer = FWX_GUID_INIT(0x6b, 0x0e, 0x6a, 0x10, 0x3d, 0x1f, 0x4c, 0x21, 0x9a, 0x01, 0x46, 0x57, 0x58, 0x00, 0x10, 0x02);
/** ::IFWXTimer (declared here: it follows IFWXFirewall, which hands it out). */
typedef struct IFWXTimer IFWXTimer;

/**
 * @brief A one-shot timer on the firewall's loop, for a plugin. Implemented by the core. @since 1.1
 *
 * QueryInterface for IID_IFWXTimer on IFWXFirewall gives a new timer (+1), disarmed, bound to
 * the plugin whose call is running (its expiry is a call into that plugin, watched as any
 * other). A filter keeps one per object that needs time (the RTSP filter: one per control
 * connection, for the RTSP session timeout) and releases it when that object goes; releasing
 * an armed timer disarms it. A host older than 1.1 answers FWX_E_NOINTERFACE.
 *
 * Rationale: a protocol's own deadlines (a session timeout a server announces, a keep-alive
 * the client owes) are not the core's idle or handshake limits, and a plugin cannot reach the
 * firewall's `uv_loop_t`. A completion is the callback, as for sockets, so that a filter needs
 * no new callback interface; the timer holds it only while armed.
 */
typedef struct IFWXTimerVtbl {
    FWX_IUNKNOWN_METHODS(IFWXTimer);
    /**
     * Arms the timer: after @p dwMilliseconds (0: on the next loop turn) the core calls
     * @p pCompletion's CompleteAsyncIO once, with fSuccess 1, Win32ErrorCode 0, no buffer,
     * @p UserData and no address, from the loop. Arming an armed timer replaces the earlier
     * deadline and completion (the earlier completion is released, never called). [loop-thread]
     * @param pCompletion borrowed, required; referenced until it is called or disarmed.
     * @return FWX_S_OK; FWX_E_POINTER; FWX_E_TERMINATING once the firewall is closing (nothing
     *         is armed).
     */
    fwx_result (*Start)(IFWXTimer *This, uint32_t dwMilliseconds, IFWXIOCompletion *pCompletion, uintptr_t UserData);
    /**
     * Disarms the timer; its completion is released without being called. [loop-thread]
     * @return FWX_S_OK (also when it was not armed).
     */
    fwx_result (*Stop)(IFWXTimer *This);
} IFWXTimerVtbl;
/** A plugin's timer. @since 1.1 */
struct IFWXTimer {
    const IFWXTimerVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXTimer)
/** Calls IFWXTimerVtbl::Start. */
static inline fwx_result IFWXTimer_Start(IFWXTimer *This, uint32_t ms, IFWXIOCompletion *c, uintptr_t ud)
{
    return This->lpVtbl->Start(This, ms, c, ud);
}
/** Calls IFWXTimerVtbl::Stop. */
static inline fwx_result IFWXTimer_Stop(IFWXTimer *This) { return This->lpVtbl->Stop(This); }

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief A client session. Implemented by the core.
 *
 * One session per client address for transparent (NAT) traffic, one per control channel for
 * explicit clients. After the session ends every method returns FWX_E_TERMINATING, except
 * GetClientAddress and GetSessionFlags.
 *
 * **Secondary-connection rules**, enforced whatever the flags: a target port below 1024 or
 * port 0, any address of the gateway itself, loopback, the unspecified address, broadcast and
 * multicast are refused with FWX_E_ADDRESS_NOT_ALLOWED. Per-session and global caps on
 * outstanding permissions and bound ports give FWX_E_QUOTA_EXCEEDED. Everything a session set
 * up is withdrawn when it ends.
 */
typedef struct IFWXSessionVtbl {
    FWX_IUNKNOWN_METHODS(IFWXSession);
    /**
     * The client's address (port 0). [loop-thread]
     * @param Address receives the address; @param AddressLength in: its size; out: the length.
     * @return FWX_S_OK, FWX_E_POINTER, FWX_E_INVALIDARG (buffer too small).
     */
    fwx_result (*GetClientAddress)(IFWXSession *This, struct sockaddr *Address, uint32_t *AddressLength);
    /**
     * Lets the session's client make a secondary outbound connection, as when an FTP server
     * answers `227 Entering Passive Mode (...)`. [loop-thread]
     *
     * By default the target must be the external peer of @p pConnection; the
     * FWX_FLAG_ALLOW_ADDRESSES_* flags widen that. With FWX_FLAG_REPLY_FROM_PEER (UDP) the
     * target is instead the client's own end of @p pConnection, and the permission admits the
     * answer of its other party from any source port. Unless FWX_FLAG_ALLOW_MULTIPLE, one
     * connection uses the permission up; with FWX_FLAG_TIMEOUT it expires when unused.
     * @param Address the target address and port (borrowed).
     * @param ProxyExternalAddress the gateway address to connect from, or NULL for any (borrowed).
     * @param Protocol FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP.
     * @param dwFlags see the flag table.
     * @param ProtocolGuid the protocol the connection belongs to (borrowed).
     * @param pSessionFilter borrowed, may be NULL: receives fwx_EstablishedConnection.
     * @param punkContext borrowed, may be NULL: handed back in that event (the core keeps a reference).
     * @param pConnection borrowed: the primary connection; NULL only with FWX_FLAG_ALLOW_ADDRESSES_ALL.
     * @param ppFirewallAction may be NULL; receives a new reference (+1) to the permission.
     * @return FWX_S_OK; FWX_E_INVALIDARG (bad flags, lengths, protocol, NULL connection);
     *   FWX_E_ADDRESS_NOT_ALLOWED (out of scope or a forbidden target);
     *   FWX_E_PROTOCOL_RULES_DENIED, FWX_E_SITE_AND_CONTENT_RULES_DENIED (policy);
     *   FWX_E_DUP_NAME (a permission for that address and port exists); FWX_E_QUOTA_EXCEEDED;
     *   FWX_E_TERMINATING; a backend failure code.
     */
    fwx_result (*AllowFutureConnect)(IFWXSession *This, const struct sockaddr *Address, uint32_t AddressLength,
                                     const struct sockaddr *ProxyExternalAddress, uint32_t ProxyExternalAddressLength,
                                     int32_t Protocol, uint32_t dwFlags, const fwx_guid *ProtocolGuid,
                                     IFWXSessionFilter *pSessionFilter, IUnknown *punkContext,
                                     IFWXConnection *pConnection, IFWXFirewallAction **ppFirewallAction);
    /**
     * Binds gateway ports on behalf of the client for secondary inbound connections, as when
     * an FTP client sends `PORT 10,0,0,8,6,17`. [loop-thread]
     *
     * With @p dwNumberOfAddresses = N > 1, N consecutive ports are bound, the lowest a multiple
     * of N, all or nothing; ConnectionArray[i] forwards to ClientAddresses[i] and owns port
     * lowest+i. By default each client address must be the session client's own; an address
     * of all zeros may be set later with IFWXConnection::SetClientAddress. Filters hooking
     * fwx_Bind_Tcp / fwx_Bind_Udp may deny the bind. Without FWX_FLAG_TIMEOUT the connections
     * live until IFWXConnection::Kill.
     *
     * Who may connect: @p pIpFilter when given; otherwise only the external peers of the
     * session's open connections. Rationale: ISA left a NULL filter unrestricted, which lets
     * anyone race the real server for the port; fwx scopes it by default.
     * @param ClientAddresses N borrowed addresses, all of length @p ClientAddressLength.
     * @param ProxyAddress in: the gateway address to bind (an address of the gateway, or the
     *   unspecified address) and a port to force (N = 1 only; 0 picks one); out: the address
     *   and lowest port bound. Its buffer must hold @p ProxyAddressLength bytes.
     * @param Backlog the listen backlog for TCP.
     * @param pIpFilter borrowed, may be NULL; copied.
     * @param ConnectionArray receives N new references (+1 each), or NULLs on failure.
     * @return FWX_S_OK; FWX_E_INVALIDARG; FWX_E_ADDRESS_NOT_ALLOWED; FWX_E_ADDRNOTAVAIL (the
     *   proxy address is not the gateway's); FWX_E_ADDRINUSE (the forced port is taken, or a
     *   filter denied the bind); FWX_E_NO_PORTS; FWX_E_PROTOCOL_RULES_DENIED;
     *   FWX_E_QUOTA_EXCEEDED; FWX_E_TERMINATING; a backend failure code.
     */
    fwx_result (*BindForClient)(IFWXSession *This, const struct sockaddr *const ClientAddresses[],
                                uint32_t ClientAddressLength, struct sockaddr *ProxyAddress, uint32_t ProxyAddressLength,
                                int32_t Protocol, uint32_t dwNumberOfAddresses, uint32_t dwFlags, int32_t Backlog,
                                const fwx_guid *ProtocolGuid, IFWXSessionFilter *pSessionFilter, IUnknown *punkContext,
                                IFWXIpFilter *pIpFilter, IFWXConnection *ConnectionArray[]);
    /**
     * Creates an emulated bind: the filter itself will produce the data of connections to
     * @p ProxyAddress on behalf of @p ClientAddress. [loop-thread]
     * @param ppConnection receives a new reference (+1).
     * @param fInternalAddressTranslation nonzero for full proxy mode.
     * @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_ADDRESS_NOT_ALLOWED, FWX_E_TERMINATING.
     */
    fwx_result (*EmulateClientBind)(IFWXSession *This, const struct sockaddr *ClientAddress, uint32_t ClientAddressLength,
                                    const struct sockaddr *ProxyAddress, uint32_t ProxyAddressLength, int32_t Protocol,
                                    const fwx_guid *ProtocolGuid, IFWXConnection **ppConnection,
                                    int32_t fInternalAddressTranslation);
    /** The FWX_SESSION_* flags. [loop-thread] @return FWX_S_OK, FWX_E_POINTER. */
    fwx_result (*GetSessionFlags)(IFWXSession *This, uint32_t *pdwFlags);
    /**
     * Makes N gateway ports on the client's side forward to @p ConnectAddresses, so an
     * explicit client only ever talks to the gateway. [loop-thread]
     *
     * Each target must be an external peer of the session. Only the session's client may use
     * the ports; unless FWX_FLAG_ALLOW_MULTIPLE each is used once.
     * @param ConnectAddresses N borrowed targets, each @p ConnectAddressLength long.
     * @param InternalAddress receives the gateway address and lowest port the connecting party
     *   connects to: the gateway's address as that party sees it. For targets that are servers
     *   (an explicit client's passive mode) the connecting party is the client: the gateway
     *   address its session came in on. For a target that is the session's client (a published
     *   server's active mode) it is the published server: the local address of the gateway's
     *   connection to it, on the server's side; of the connection whose bytes the calling data
     *   filter is handling, when a session has several (since 1.0; a backend that does not
     *   report that address gets a configured address of the server's family).
     * @param InternalAddressLength in: its buffer size; out: the length written.
     * @param ProxyExternalAddress the gateway address to connect from, or NULL.
     * @param FirewallActionArray receives N new references (+1 each); may be NULL.
     * @return FWX_S_OK; FWX_E_INVALIDARG; FWX_E_ADDRESS_NOT_ALLOWED; FWX_E_NO_PORTS;
     *   FWX_E_PROTOCOL_RULES_DENIED; FWX_E_QUOTA_EXCEEDED; FWX_E_TERMINATING; a backend code.
     */
    fwx_result (*RedirectConnections)(IFWXSession *This, const struct sockaddr *const ConnectAddresses[],
                                      uint32_t ConnectAddressLength, uint32_t dwNumberOfAddresses,
                                      struct sockaddr *InternalAddress, uint32_t *InternalAddressLength,
                                      const struct sockaddr *ProxyExternalAddress, uint32_t ProxyExternalAddressLength,
                                      int32_t Protocol, uint32_t dwFlags, const fwx_guid *ProtocolGuid,
                                      IFWXSessionFilter *pSessionFilter, IUnknown *punkContext,
                                      IFWXFirewallAction *FirewallActionArray[]);
    /**
     * Attaches the filter with class id @p FilterGuid to this session now, before any event.
     * [loop-thread]
     * @return FWX_S_OK (also when already attached), FWX_E_CLASSNOTREG (no such filter loaded),
     *   FWX_E_TERMINATING, or the filter's AttachToSession failure.
     */
    fwx_result (*AttachFilter)(IFWXSession *This, const fwx_guid *FilterGuid);
    /**
     * Registers a factory: when a connection event of @p EventType for @p Address happens in
     * this session, the core creates a data filter from @p pFactory and attaches it with
     * @p Priority and @p pFilterContext. Connections this matches are carried in user mode.
     * [loop-thread]
     * @param EventType fwx_Connect_Tcp, fwx_Bind_Udp, fwx_AcceptedConnection or fwx_Udp_Destination.
     * @param Address the address to match (a zero port matches any port) (borrowed).
     * @param pFactory borrowed; the core keeps a reference until the action ends.
     * @param pFilterContext borrowed, may be NULL; the core keeps a reference.
     * @param dwFlags 0 (this session's connections only) or FWX_FLAG_ADDRESS_BASED (also the
     *   connections of every other session of the same client address, while this one lasts).
     * @param ppFirewallAction may be NULL; receives a new reference (+1).
     * @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_QUOTA_EXCEEDED, FWX_E_TERMINATING.
     */
    fwx_result (*SetDataFilterFactory)(IFWXSession *This, uint32_t EventType, const struct sockaddr *Address,
                                       uint32_t AddressLength, IClassFactory *pFactory,
                                       FwxDataFilterPriorityClass Priority, IUnknown *pFilterContext, uint32_t dwFlags,
                                       IFWXFirewallAction **ppFirewallAction);
    /**
     * Approves, after the fact, a bind an explicit client already made (a SOCKS BIND), so
     * that connections or datagrams to it are no longer silently discarded. [loop-thread]
     *
     * The policy decides, as for every secondary connection (T21 in doc/sdk-rules.md): the protocol is
     * @p ProtocolGuid's definition, or, for a guid the policy does not know, that of the
     * session's newest primary connection; with a policy and neither, the approval is refused.
     * When the session has a peer, the rules are asked for it now. When it has none (a SOCKS
     * BIND is a session of its own), the approval is refused only if no rule lets the client
     * use the protocol at all; each connection that then arrives is decided with its peer
     * (fwx_firewall_admit() answers the policy's code). Without a policy nothing is refused.
     * @param Address the bound address; the unspecified address matches any; the port must not be 0.
     * @param ProtocolGuid borrowed, may be NULL.
     * @param pIpFilter borrowed, may be NULL; copied; restricts who may connect.
     * @return FWX_S_OK; FWX_S_FALSE (already allowed); FWX_E_INVALIDARG; FWX_E_NOT_FOUND (no
     *   such bind in this session); FWX_E_TERMINATING (the session has ended, or the bind is
     *   ending: its connection was killed, or is being, and an object of it is still held);
     *   FWX_E_PROTOCOL_RULES_DENIED, FWX_E_SITE_AND_CONTENT_RULES_DENIED (policy); a backend
     *   failure code (the bind stays unapproved).
     */
    fwx_result (*RetroactiveAllowBind)(IFWXSession *This, int32_t Protocol, const struct sockaddr *Address,
                                       uint32_t AddressLength, const fwx_guid *ProtocolGuid, uint32_t dwFlags,
                                       IFWXIpFilter *pIpFilter);
    /**
     * A socket used on behalf of this session's client, subject to its policy. [loop-thread]
     * @param ppSocket new reference (+1).
     * @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_NOT_SUPPORTED (backend without sockets), FWX_E_TERMINATING.
     */
    fwx_result (*CreateNetworkSocket)(IFWXSession *This, int32_t Protocol, IFWXNetworkSocket **ppSocket);
} IFWXSessionVtbl;
/** A session. */
struct IFWXSession {
    const IFWXSessionVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXSession)
/** Calls IFWXSessionVtbl::GetClientAddress. */
static inline fwx_result IFWXSession_GetClientAddress(IFWXSession *This, struct sockaddr *a, uint32_t *l)
{
    return This->lpVtbl->GetClientAddress(This, a, l);
}
/** Calls IFWXSessionVtbl::AllowFutureConnect. */
static inline fwx_result IFWXSession_AllowFutureConnect(IFWXSession *This, const struct sockaddr *a, uint32_t al,
                                                        const struct sockaddr *pe, uint32_t pel, int32_t proto,
                                                        uint32_t flags, const fwx_guid *pg, IFWXSessionFilter *sf,
                                                        IUnknown *ctx, IFWXConnection *c, IFWXFirewallAction **act)
{
    return This->lpVtbl->AllowFutureConnect(This, a, al, pe, pel, proto, flags, pg, sf, ctx, c, act);
}
/** Calls IFWXSessionVtbl::BindForClient. */
static inline fwx_result IFWXSession_BindForClient(IFWXSession *This, const struct sockaddr *const ca[], uint32_t cal,
                                                   struct sockaddr *pa, uint32_t pal, int32_t proto, uint32_t n,
                                                   uint32_t flags, int32_t backlog, const fwx_guid *pg,
                                                   IFWXSessionFilter *sf, IUnknown *ctx, IFWXIpFilter *ipf,
                                                   IFWXConnection *conns[])
{
    return This->lpVtbl->BindForClient(This, ca, cal, pa, pal, proto, n, flags, backlog, pg, sf, ctx, ipf, conns);
}
/** Calls IFWXSessionVtbl::EmulateClientBind. */
static inline fwx_result IFWXSession_EmulateClientBind(IFWXSession *This, const struct sockaddr *c, uint32_t cl,
                                                       const struct sockaddr *p, uint32_t pl, int32_t proto,
                                                       const fwx_guid *pg, IFWXConnection **conn, int32_t iat)
{
    return This->lpVtbl->EmulateClientBind(This, c, cl, p, pl, proto, pg, conn, iat);
}
/** Calls IFWXSessionVtbl::GetSessionFlags. */
static inline fwx_result IFWXSession_GetSessionFlags(IFWXSession *This, uint32_t *f) { return This->lpVtbl->GetSessionFlags(This, f); }
/** Calls IFWXSessionVtbl::RedirectConnections. */
static inline fwx_result IFWXSession_RedirectConnections(IFWXSession *This, const struct sockaddr *const ca[],
                                                         uint32_t cal, uint32_t n, struct sockaddr *ia, uint32_t *ial,
                                                         const struct sockaddr *pe, uint32_t pel, int32_t proto,
                                                         uint32_t flags, const fwx_guid *pg, IFWXSessionFilter *sf,
                                                         IUnknown *ctx, IFWXFirewallAction *acts[])
{
    return This->lpVtbl->RedirectConnections(This, ca, cal, n, ia, ial, pe, pel, proto, flags, pg, sf, ctx, acts);
}
/** Calls IFWXSessionVtbl::AttachFilter. */
static inline fwx_result IFWXSession_AttachFilter(IFWXSession *This, const fwx_guid *g) { return This->lpVtbl->AttachFilter(This, g); }
/** Calls IFWXSessionVtbl::SetDataFilterFactory. */
static inline fwx_result IFWXSession_SetDataFilterFactory(IFWXSession *This, uint32_t ev, const struct sockaddr *a,
                                                          uint32_t al, IClassFactory *f, FwxDataFilterPriorityClass prio,
                                                          IUnknown *ctx, uint32_t flags, IFWXFirewallAction **act)
{
    return This->lpVtbl->SetDataFilterFactory(This, ev, a, al, f, prio, ctx, flags, act);
}
/** Calls IFWXSessionVtbl::RetroactiveAllowBind. */
static inline fwx_result IFWXSession_RetroactiveAllowBind(IFWXSession *This, int32_t proto, const struct sockaddr *a,
                                                          uint32_t al, const fwx_guid *pg, uint32_t flags,
                                                          IFWXIpFilter *ipf)
{
    return This->lpVtbl->RetroactiveAllowBind(This, proto, a, al, pg, flags, ipf);
}
/** Calls IFWXSessionVtbl::CreateNetworkSocket. */
static inline fwx_result IFWXSession_CreateNetworkSocket(IFWXSession *This, int32_t proto, IFWXNetworkSocket **s)
{
    return This->lpVtbl->CreateNetworkSocket(This, proto, s);
}

/* ---------------------------------------------------------------------------------------- */
/**
 * @brief A connection: primary, secondary, listening or emulated. Implemented by the core.
 *
 * Keep no reference to a connection after its fwx_ConnectionTerminating event.
 */
typedef struct IFWXConnectionVtbl {
    FWX_IUNKNOWN_METHODS(IFWXConnection);
    /**
     * Puts @p pDataFilter in the connection's data stream. Only inside the handler of
     * fwx_AcceptedConnection, fwx_Bind_Udp, fwx_Connect_Tcp or fwx_Udp_Destination for this
     * connection; the connection is then carried in user mode. [loop-thread]
     * @param pDataFilter borrowed; the core keeps a reference until it detaches it.
     * @param pFilterContext borrowed, may be NULL; handed to SetSockets.
     * @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_BAD_CONTEXT, FWX_E_TERMINATING.
     */
    fwx_result (*AttachDataFilter)(IFWXConnection *This, IFWXDataFilter *pDataFilter,
                                   FwxDataFilterPriorityClass Priority, IUnknown *pFilterContext);
    /**
     * As AttachDataFilter, for one UDP destination only (fwx_Udp_Destination handlers): the
     * filter joins the data path of the flow whose external peer is @p ExternalAddress (address
     * and port) and sees only its datagrams; on a flow to another destination it never gets
     * sockets. It is detached when the destination expires: the flow idles out (the firewall's
     * timeout) or the connection ends. [loop-thread]
     * @param ExternalAddress borrowed; copied.
     * @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_BAD_CONTEXT, FWX_E_TERMINATING.
     */
    fwx_result (*AttachDataFilterWithDestination)(IFWXConnection *This, IFWXDataFilter *pDataFilter,
                                                  FwxDataFilterPriorityClass Priority, IUnknown *pFilterContext,
                                                  const struct sockaddr *ExternalAddress, uint32_t ExternalAddressLength);
    /**
     * On a listening or emulated connection: creates a connection the filter emulates,
     * as if @p RemoteAddress had connected to @p LocalAddress. [loop-thread]
     * @param ppConnection receives a new reference (+1).
     * @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_WSAEINVAL (not listening or emulated), FWX_E_TERMINATING.
     */
    fwx_result (*EmulateConnection)(IFWXConnection *This, IFWXDataFilter *pDataFilter, const struct sockaddr *RemoteAddress,
                                    uint32_t RemoteAddressLength, const struct sockaddr *LocalAddress,
                                    uint32_t LocalAddressLength, IFWXConnection **ppConnection);
    /** Emulates a bind, inside a fwx_Bind_* handler. [loop-thread]
        @return FWX_S_OK, FWX_E_BAD_CONTEXT, FWX_E_ALREADY_EMULATED, FWX_E_TERMINATING. */
    fwx_result (*EmulateForBind)(IFWXConnection *This);
    /** Emulates the connect, inside a fwx_Connect_Tcp handler: the data filter (borrowed) is the
        server. [loop-thread] @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_BAD_CONTEXT, FWX_E_ALREADY_EMULATED. */
    fwx_result (*EmulateForConnect)(IFWXConnection *This, IFWXDataFilter *pDataFilter, IUnknown *pFilterContext);
    /** Adds to the connection's sent-bytes counter (for emulated data). [loop-thread] @return FWX_S_OK. */
    fwx_result (*IncrementBytesSentCounter)(IFWXConnection *This, uint32_t dwBytes);
    /** Sets the address the external side appears to come from (emulation). [loop-thread]
        @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_TERMINATING. */
    fwx_result (*SetSocketName)(IFWXConnection *This, const struct sockaddr *Address, uint32_t AddressLength);
    /** Ends the connection (or listener) now; ConnectionTerminating follows. Always FWX_S_OK. [loop-thread] */
    fwx_result (*Kill)(IFWXConnection *This);
    /** The gateway's address on the external side. [loop-thread]
        @param AddressLength in: buffer size; out: length. @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_NOT_FOUND (not yet known). */
    fwx_result (*GetExternalSocketName)(IFWXConnection *This, struct sockaddr *Address, uint32_t *AddressLength);
    /**
     * Sets the client address of a BindForClient connection made with an all-zero address.
     * Once only. [loop-thread]
     * @return FWX_S_OK; FWX_E_INVALIDARG (second call, not such a connection, bad address);
     *   FWX_E_ADDRESS_NOT_ALLOWED (outside the bind's scope); FWX_E_TERMINATING.
     */
    fwx_result (*SetClientAddress)(IFWXConnection *This, const struct sockaddr *Address, uint32_t AddressLength);
    /**
     * Denies the event being handled: a bind fails with FWX_E_ADDRINUSE, a connect with
     * FWX_E_CONNREFUSED, an accepted connection is aborted. fwx_Listen cannot be denied.
     * [loop-thread]
     * @return FWX_S_OK, FWX_E_INVALIDARG (@p Reserved not 0), FWX_E_BAD_CONTEXT (outside the handler).
     */
    fwx_result (*Deny)(IFWXConnection *This, uint32_t Reserved);
    /** Sets the buffer size for core-allocated receive buffers (Recv(NULL)), read at each Recv
        (defaults: TCP 2048, UDP 4096). A UDP datagram larger than the receive buffer is dropped
        and counted (fwx_firewall_datagrams_dropped()). 1 byte to 16 MiB. [loop-thread]
        @return FWX_S_OK, FWX_E_INVALIDARG. */
    fwx_result (*SetBufferSize)(IFWXConnection *This, uint32_t dwSize);
    /** The remote address on the external side. [loop-thread]
        @return FWX_S_OK, FWX_E_INVALIDARG, FWX_E_NOT_FOUND (not yet known). */
    fwx_result (*GetExternalPeerName)(IFWXConnection *This, struct sockaddr *Address, uint32_t *AddressLength);
    /** The session. [loop-thread] @param ppSession new reference (+1). @return FWX_S_OK, FWX_E_POINTER. */
    fwx_result (*GetSession)(IFWXConnection *This, IFWXSession **ppSession);
    /** Restricts who may connect (borrowed, copied; NULL: the default scope). [loop-thread]
        @return FWX_S_OK, FWX_E_NOT_SUPPORTED (emulated connection), FWX_E_TERMINATING. */
    fwx_result (*SetIpFilter)(IFWXConnection *This, IFWXIpFilter *pIpFilter);
    /**
     * The IP filter in force: the one given to SetIpFilter, BindForClient or
     * RetroactiveAllowBind. [loop-thread]
     * @param ppIpFilter receives a copy of it (+1: a new object; change it and pass it to
     *   SetIpFilter to change what applies), or NULL when the connection has none (a bound
     *   port without one takes only the external peers of the session's open connections).
     * @return FWX_S_OK, FWX_E_POINTER, FWX_E_OUTOFMEMORY.
     */
    fwx_result (*GetIpFilter)(IFWXConnection *This, IFWXIpFilter **ppIpFilter);
    /** The FWX_CONNECTION_* flags. [loop-thread] @return FWX_S_OK, FWX_E_POINTER. */
    fwx_result (*GetConnectionFlags)(IFWXConnection *This, uint32_t *pdwFlags);
} IFWXConnectionVtbl;
/** A connection. */
struct IFWXConnection {
    const IFWXConnectionVtbl *lpVtbl; /**< the method table */
};
FWX_IUNKNOWN_WRAPPERS(IFWXConnection)
/** Calls IFWXConnectionVtbl::AttachDataFilter. */
static inline fwx_result IFWXConnection_AttachDataFilter(IFWXConnection *This, IFWXDataFilter *df,
                                                         FwxDataFilterPriorityClass p, IUnknown *ctx)
{
    return This->lpVtbl->AttachDataFilter(This, df, p, ctx);
}
/** Calls IFWXConnectionVtbl::AttachDataFilterWithDestination. */
static inline fwx_result IFWXConnection_AttachDataFilterWithDestination(IFWXConnection *This, IFWXDataFilter *df,
                                                                        FwxDataFilterPriorityClass p, IUnknown *ctx,
                                                                        const struct sockaddr *a, uint32_t l)
{
    return This->lpVtbl->AttachDataFilterWithDestination(This, df, p, ctx, a, l);
}
/** Calls IFWXConnectionVtbl::IncrementBytesSentCounter. */
static inline fwx_result IFWXConnection_IncrementBytesSentCounter(IFWXConnection *This, uint32_t n)
{
    return This->lpVtbl->IncrementBytesSentCounter(This, n);
}
/** Calls IFWXConnectionVtbl::SetSocketName. */
static inline fwx_result IFWXConnection_SetSocketName(IFWXConnection *This, const struct sockaddr *a, uint32_t l)
{
    return This->lpVtbl->SetSocketName(This, a, l);
}
/** Calls IFWXConnectionVtbl::EmulateConnection. */
static inline fwx_result IFWXConnection_EmulateConnection(IFWXConnection *This, IFWXDataFilter *df,
                                                          const struct sockaddr *r, uint32_t rl,
                                                          const struct sockaddr *l, uint32_t ll, IFWXConnection **c)
{
    return This->lpVtbl->EmulateConnection(This, df, r, rl, l, ll, c);
}
/** Calls IFWXConnectionVtbl::EmulateForBind. */
static inline fwx_result IFWXConnection_EmulateForBind(IFWXConnection *This) { return This->lpVtbl->EmulateForBind(This); }
/** Calls IFWXConnectionVtbl::EmulateForConnect. */
static inline fwx_result IFWXConnection_EmulateForConnect(IFWXConnection *This, IFWXDataFilter *df, IUnknown *ctx)
{
    return This->lpVtbl->EmulateForConnect(This, df, ctx);
}
/** Calls IFWXConnectionVtbl::Kill. */
static inline fwx_result IFWXConnection_Kill(IFWXConnection *This) { return This->lpVtbl->Kill(This); }
/** Calls IFWXConnectionVtbl::GetExternalSocketName. */
static inline fwx_result IFWXConnection_GetExternalSocketName(IFWXConnection *This, struct sockaddr *a, uint32_t *l)
{
    return This->lpVtbl->GetExternalSocketName(This, a, l);
}
/** Calls IFWXConnectionVtbl::SetClientAddress. */
static inline fwx_result IFWXConnection_SetClientAddress(IFWXConnection *This, const struct sockaddr *a, uint32_t l)
{
    return This->lpVtbl->SetClientAddress(This, a, l);
}
/** Calls IFWXConnectionVtbl::Deny. */
static inline fwx_result IFWXConnection_Deny(IFWXConnection *This, uint32_t r) { return This->lpVtbl->Deny(This, r); }
/** Calls IFWXConnectionVtbl::SetBufferSize. */
static inline fwx_result IFWXConnection_SetBufferSize(IFWXConnection *This, uint32_t n) { return This->lpVtbl->SetBufferSize(This, n); }
/** Calls IFWXConnectionVtbl::GetExternalPeerName. */
static inline fwx_result IFWXConnection_GetExternalPeerName(IFWXConnection *This, struct sockaddr *a, uint32_t *l)
{
    return This->lpVtbl->GetExternalPeerName(This, a, l);
}
/** Calls IFWXConnectionVtbl::GetSession. */
static inline fwx_result IFWXConnection_GetSession(IFWXConnection *This, IFWXSession **s) { return This->lpVtbl->GetSession(This, s); }
/** Calls IFWXConnectionVtbl::SetIpFilter. */
static inline fwx_result IFWXConnection_SetIpFilter(IFWXConnection *This, IFWXIpFilter *f) { return This->lpVtbl->SetIpFilter(This, f); }
/** Calls IFWXConnectionVtbl::GetIpFilter. */
static inline fwx_result IFWXConnection_GetIpFilter(IFWXConnection *This, IFWXIpFilter **f) { return This->lpVtbl->GetIpFilter(This, f); }
/** Calls IFWXConnectionVtbl::GetConnectionFlags. */
static inline fwx_result IFWXConnection_GetConnectionFlags(IFWXConnection *This, uint32_t *f)
{
    return This->lpVtbl->GetConnectionFlags(This, f);
}

/* ---------------------------------------------------------------------------------------- */
/** @cond */
typedef struct IFWXConnection2 IFWXConnection2;
/** @endcond */
/**
 * @brief IFWXConnection with what fwx adds. Implemented by the core; get it with
 * QueryInterface(IID_IFWXConnection2) on any IFWXConnection.
 *
 * It starts with the IFWXConnection methods (`Base`), so an IFWXConnection2 pointer may be
 * passed wherever an IFWXConnection is expected (cast it); it only appends.
 * Rationale: a released interface never changes (IFWXConnection stays as it is).
 * @since 1.0
 */
typedef struct IFWXConnection2Vtbl {
    /** The IFWXConnection methods, in their order. */
    IFWXConnectionVtbl Base;
    /**
     * The address on the internal side of the gateway: for a connection to a published
     * server (fwx_AcceptedConnection of a publishing rule), the published server; for a
     * client's outbound connection, the client (port 0 when not known). [loop-thread]
     * @param Address receives it. @param AddressLength in: its size; out: the length.
     * @return FWX_S_OK, FWX_E_POINTER, FWX_E_INVALIDARG (buffer too small), FWX_E_NOT_FOUND.
     */
    fwx_result (*GetInternalPeerName)(IFWXConnection2 *This, struct sockaddr *Address, uint32_t *AddressLength);
} IFWXConnection2Vtbl;
/** A connection, version 2. */
struct IFWXConnection2 {
    const IFWXConnection2Vtbl *lpVtbl; /**< the method table */
};
/** Calls IFWXConnection2Vtbl::GetInternalPeerName. */
static inline fwx_result IFWXConnection2_GetInternalPeerName(IFWXConnection2 *This, struct sockaddr *a, uint32_t *l)
{
    return This->lpVtbl->GetInternalPeerName(This, a, l);
}
/** Releases an IFWXConnection2 (its IUnknown Release). */
static inline uint32_t IFWXConnection2_Release(IFWXConnection2 *This)
{
    return This->lpVtbl->Base.Release((IFWXConnection *)(void *)This);
}

/* ---------------------------------------------------------------------------------------- */
/** @cond */
typedef struct IFWXConnection3 IFWXConnection3;
/** @endcond */
/**
 * @brief IFWXConnection2 with the connection's handshake. Implemented by the core; get it with
 * QueryInterface(IID_IFWXConnection3) on any IFWXConnection.
 *
 * It starts with the IFWXConnection2 methods (`Base`), so the pointer may be passed wherever an
 * IFWXConnection or IFWXConnection2 is expected (cast it); it only appends.
 * @since 1.1
 */
typedef struct IFWXConnection3Vtbl {
    /** The IFWXConnection2 methods, in their order. */
    IFWXConnection2Vtbl Base;
    /**
     * Says whether the connection's protocol handshake is still under way (fPending nonzero)
     * or over (zero). While a filter holds it pending, the connection's handshake timeout
     * (fwx_timeouts, a protocol's `handshake_timeout`) keeps running from the moment the
     * connection was accepted; once no filter holds it and both sides are connected, only the
     * idle timeout applies. A connection nobody holds is past its handshake when it is
     * established end to end. The FTP filter holds it from attaching to a control connection
     * until the server's 230 (login complete).
     * Call it from the connection's events or its data filter's completions (SetSockets on);
     * the last call wins. Rationale: only the protocol's filter knows when a login is over;
     * a filter that never calls it changes nothing, so filters written before 1.1 keep working.
     * [loop-thread]
     * @return FWX_S_OK, FWX_E_TERMINATING (the connection has ended).
     */
    fwx_result (*SetHandshakePending)(IFWXConnection3 *This, int32_t fPending);
} IFWXConnection3Vtbl;
/** A connection, version 3. */
struct IFWXConnection3 {
    const IFWXConnection3Vtbl *lpVtbl; /**< the method table */
};
/** Calls IFWXConnection3Vtbl::SetHandshakePending. */
static inline fwx_result IFWXConnection3_SetHandshakePending(IFWXConnection3 *This, int32_t fPending)
{
    return This->lpVtbl->SetHandshakePending(This, fPending);
}
/** Releases an IFWXConnection3 (its IUnknown Release). */
static inline uint32_t IFWXConnection3_Release(IFWXConnection3 *This)
{
    return This->lpVtbl->Base.Base.Release((IFWXConnection *)(void *)This);
}

#ifdef __cplusplus
}
#endif

#endif /* FWX_SDK_H */
