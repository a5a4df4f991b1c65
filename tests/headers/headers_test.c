/*
 * fwx tests - the public headers: they compile alone as strict C11 and C++ with every warning
 * as an error, and their layout is pinned so that an ABI change cannot slip in unnoticed.
 * SPDX-License-Identifier: MIT
 *
 * If a pin fails, you changed a released struct or vtable. Do not update the number: append
 * the field at the end (structs with struct_size), or add a new interface with a new IID
 * (vtables), and bump FWX_ABI_VERSION accordingly.
 */

/* The project adds -D_GNU_SOURCE for its own C code; a user's strict C11 build has no feature
   macros, which is what this file must see. */
#undef _GNU_SOURCE

#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>

#include <stdio.h>

#ifdef UV_VERSION_MAJOR
#error "public headers must not include <uv.h>: it needs feature macros under strict C11"
#endif

#ifdef __cplusplus
#define FWX_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define FWX_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Vtable method order: the ABI of an interface. Valid wherever function pointers are one
   pointer wide, so not tied to one platform. */
#define FWX_PIN_SLOT(T, m, i)                                                                     \
    FWX_STATIC_ASSERT(offsetof(T, m) == (i) * sizeof(void *), #T "::" #m " moved: slot " #i)
#define FWX_PIN_VTBL_SIZE(T, n)                                                                   \
    FWX_STATIC_ASSERT(sizeof(T) == (n) * sizeof(void *), #T " gained or lost a method")

FWX_PIN_VTBL_SIZE(IUnknownVtbl, 3);
FWX_PIN_SLOT(IUnknownVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IUnknownVtbl, AddRef, 1);
FWX_PIN_SLOT(IUnknownVtbl, Release, 2);
FWX_PIN_VTBL_SIZE(IClassFactoryVtbl, 5);
FWX_PIN_SLOT(IClassFactoryVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IClassFactoryVtbl, AddRef, 1);
FWX_PIN_SLOT(IClassFactoryVtbl, Release, 2);
FWX_PIN_SLOT(IClassFactoryVtbl, CreateInstance, 3);
FWX_PIN_SLOT(IClassFactoryVtbl, LockServer, 4);
FWX_PIN_VTBL_SIZE(IFWXFilterVtbl, 6);
FWX_PIN_SLOT(IFWXFilterVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXFilterVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXFilterVtbl, Release, 2);
FWX_PIN_SLOT(IFWXFilterVtbl, FilterInit, 3);
FWX_PIN_SLOT(IFWXFilterVtbl, FilterShutdown, 4);
FWX_PIN_SLOT(IFWXFilterVtbl, AttachToSession, 5);
FWX_PIN_VTBL_SIZE(IFWXSessionFilterVtbl, 5);
FWX_PIN_SLOT(IFWXSessionFilterVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXSessionFilterVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXSessionFilterVtbl, Release, 2);
FWX_PIN_SLOT(IFWXSessionFilterVtbl, FirewallEventHandler, 3);
FWX_PIN_SLOT(IFWXSessionFilterVtbl, Detach, 4);
FWX_PIN_VTBL_SIZE(IFWXDataFilterVtbl, 5);
FWX_PIN_SLOT(IFWXDataFilterVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXDataFilterVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXDataFilterVtbl, Release, 2);
FWX_PIN_SLOT(IFWXDataFilterVtbl, SetSockets, 3);
FWX_PIN_SLOT(IFWXDataFilterVtbl, Detach, 4);
FWX_PIN_VTBL_SIZE(IFWXIOCompletionVtbl, 4);
FWX_PIN_SLOT(IFWXIOCompletionVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXIOCompletionVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXIOCompletionVtbl, Release, 2);
FWX_PIN_SLOT(IFWXIOCompletionVtbl, CompleteAsyncIO, 3);
FWX_PIN_VTBL_SIZE(IFWXAcceptCompletionVtbl, 4);
FWX_PIN_SLOT(IFWXAcceptCompletionVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXAcceptCompletionVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXAcceptCompletionVtbl, Release, 2);
FWX_PIN_SLOT(IFWXAcceptCompletionVtbl, CompleteAsyncAccept, 3);
FWX_PIN_VTBL_SIZE(IFWXIOBufferVtbl, 9);
FWX_PIN_SLOT(IFWXIOBufferVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXIOBufferVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXIOBufferVtbl, Release, 2);
FWX_PIN_SLOT(IFWXIOBufferVtbl, GetBufferAndSize, 3);
FWX_PIN_SLOT(IFWXIOBufferVtbl, SetDataSize, 4);
FWX_PIN_SLOT(IFWXIOBufferVtbl, Append, 5);
FWX_PIN_SLOT(IFWXIOBufferVtbl, ReadAt, 6);
FWX_PIN_SLOT(IFWXIOBufferVtbl, SendToBuffer, 7);
FWX_PIN_SLOT(IFWXIOBufferVtbl, GetBufferSizes, 8);
FWX_PIN_VTBL_SIZE(IFWXIpFilterVtbl, 10);
FWX_PIN_SLOT(IFWXIpFilterVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXIpFilterVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXIpFilterVtbl, Release, 2);
FWX_PIN_SLOT(IFWXIpFilterVtbl, IncludeRange, 3);
FWX_PIN_SLOT(IFWXIpFilterVtbl, ExcludeRange, 4);
FWX_PIN_SLOT(IFWXIpFilterVtbl, IncludeFilter, 5);
FWX_PIN_SLOT(IFWXIpFilterVtbl, ExcludeFilter, 6);
FWX_PIN_SLOT(IFWXIpFilterVtbl, IsIncluded, 7);
FWX_PIN_SLOT(IFWXIpFilterVtbl, Compare, 8);
FWX_PIN_SLOT(IFWXIpFilterVtbl, Clone, 9);
FWX_PIN_VTBL_SIZE(IFWXFirewallActionVtbl, 4);
FWX_PIN_SLOT(IFWXFirewallActionVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXFirewallActionVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXFirewallActionVtbl, Release, 2);
FWX_PIN_SLOT(IFWXFirewallActionVtbl, Cancel, 3);
FWX_PIN_VTBL_SIZE(IFWXUdpDestinationVtbl, 4);
FWX_PIN_SLOT(IFWXUdpDestinationVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXUdpDestinationVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXUdpDestinationVtbl, Release, 2);
FWX_PIN_SLOT(IFWXUdpDestinationVtbl, Deny, 3);
FWX_PIN_VTBL_SIZE(IFWXSocketVtbl, 8);
FWX_PIN_SLOT(IFWXSocketVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXSocketVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXSocketVtbl, Release, 2);
FWX_PIN_SLOT(IFWXSocketVtbl, Send, 3);
FWX_PIN_SLOT(IFWXSocketVtbl, SendTo, 4);
FWX_PIN_SLOT(IFWXSocketVtbl, Recv, 5);
FWX_PIN_SLOT(IFWXSocketVtbl, Shutdown, 6);
FWX_PIN_SLOT(IFWXSocketVtbl, Close, 7);
FWX_PIN_VTBL_SIZE(IFWXNetworkSocketVtbl, 18);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, Release, 2);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, Send, 3);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, SendTo, 4);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, Recv, 5);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, Shutdown, 6);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, Close, 7);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, Connect, 8);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, Bind, 9);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, GetSockName, 10);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, GetPeerName, 11);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, Listen, 12);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, SetSockOpt, 13);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, GetSockOpt, 14);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, Accept, 15);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, SetIpFilter, 16);
FWX_PIN_SLOT(IFWXNetworkSocketVtbl, GetIpFilter, 17);
FWX_PIN_VTBL_SIZE(IFWXFirewallVtbl, 8);
FWX_PIN_SLOT(IFWXFirewallVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXFirewallVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXFirewallVtbl, Release, 2);
FWX_PIN_SLOT(IFWXFirewallVtbl, CreateNetworkSocket, 3);
FWX_PIN_SLOT(IFWXFirewallVtbl, CreateBuffer, 4);
FWX_PIN_SLOT(IFWXFirewallVtbl, CreateIpFilter, 5);
FWX_PIN_SLOT(IFWXFirewallVtbl, GetClientSession, 6);
FWX_PIN_SLOT(IFWXFirewallVtbl, CreatePrivateSession, 7);
FWX_PIN_VTBL_SIZE(IFWXHostLogVtbl, 5);
FWX_PIN_SLOT(IFWXHostLogVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXHostLogVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXHostLogVtbl, Release, 2);
FWX_PIN_SLOT(IFWXHostLogVtbl, IsEnabled, 3);
FWX_PIN_SLOT(IFWXHostLogVtbl, Log, 4);
FWX_PIN_VTBL_SIZE(IFWXSessionVtbl, 13);
FWX_PIN_SLOT(IFWXSessionVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXSessionVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXSessionVtbl, Release, 2);
FWX_PIN_SLOT(IFWXSessionVtbl, GetClientAddress, 3);
FWX_PIN_SLOT(IFWXSessionVtbl, AllowFutureConnect, 4);
FWX_PIN_SLOT(IFWXSessionVtbl, BindForClient, 5);
FWX_PIN_SLOT(IFWXSessionVtbl, EmulateClientBind, 6);
FWX_PIN_SLOT(IFWXSessionVtbl, GetSessionFlags, 7);
FWX_PIN_SLOT(IFWXSessionVtbl, RedirectConnections, 8);
FWX_PIN_SLOT(IFWXSessionVtbl, AttachFilter, 9);
FWX_PIN_SLOT(IFWXSessionVtbl, SetDataFilterFactory, 10);
FWX_PIN_SLOT(IFWXSessionVtbl, RetroactiveAllowBind, 11);
FWX_PIN_SLOT(IFWXSessionVtbl, CreateNetworkSocket, 12);
FWX_PIN_VTBL_SIZE(IFWXConnectionVtbl, 20);
FWX_PIN_SLOT(IFWXConnectionVtbl, QueryInterface, 0);
FWX_PIN_SLOT(IFWXConnectionVtbl, AddRef, 1);
FWX_PIN_SLOT(IFWXConnectionVtbl, Release, 2);
FWX_PIN_SLOT(IFWXConnectionVtbl, AttachDataFilter, 3);
FWX_PIN_SLOT(IFWXConnectionVtbl, AttachDataFilterWithDestination, 4);
FWX_PIN_SLOT(IFWXConnectionVtbl, EmulateConnection, 5);
FWX_PIN_SLOT(IFWXConnectionVtbl, EmulateForBind, 6);
FWX_PIN_SLOT(IFWXConnectionVtbl, EmulateForConnect, 7);
FWX_PIN_SLOT(IFWXConnectionVtbl, IncrementBytesSentCounter, 8);
FWX_PIN_SLOT(IFWXConnectionVtbl, SetSocketName, 9);
FWX_PIN_SLOT(IFWXConnectionVtbl, Kill, 10);
FWX_PIN_SLOT(IFWXConnectionVtbl, GetExternalSocketName, 11);
FWX_PIN_SLOT(IFWXConnectionVtbl, SetClientAddress, 12);
FWX_PIN_SLOT(IFWXConnectionVtbl, Deny, 13);
FWX_PIN_SLOT(IFWXConnectionVtbl, SetBufferSize, 14);
FWX_PIN_SLOT(IFWXConnectionVtbl, GetExternalPeerName, 15);
FWX_PIN_SLOT(IFWXConnectionVtbl, GetSession, 16);
FWX_PIN_SLOT(IFWXConnectionVtbl, SetIpFilter, 17);
FWX_PIN_SLOT(IFWXConnectionVtbl, GetIpFilter, 18);
FWX_PIN_SLOT(IFWXConnectionVtbl, GetConnectionFlags, 19);

/* Sizes and offsets of every public struct, as built on x86_64 Linux (LP64, glibc). */
#if defined(__x86_64__) && defined(__linux__)
#define FWX_PIN_SIZE(T, n) FWX_STATIC_ASSERT(sizeof(T) == (n), "sizeof(" #T ") changed")
#define FWX_PIN_OFF(T, m, n) FWX_STATIC_ASSERT(offsetof(T, m) == (n), #T "." #m " moved")

FWX_PIN_SIZE(fwx_guid, 16);
FWX_PIN_OFF(fwx_guid, bytes, 0);
FWX_PIN_SIZE(FwxFilterHookEvents, 4);
FWX_PIN_OFF(FwxFilterHookEvents, dwGlobalEvents, 0);
FWX_PIN_SIZE(FwxConnectEvent, 184);
FWX_PIN_OFF(FwxConnectEvent, Address, 0);
FWX_PIN_OFF(FwxConnectEvent, AddressLength, 128);
FWX_PIN_OFF(FwxConnectEvent, piConnection, 136);
FWX_PIN_OFF(FwxConnectEvent, FilterAccess, 144);
FWX_PIN_OFF(FwxConnectEvent, piPerRuleData, 152);
FWX_PIN_OFF(FwxConnectEvent, ProtocolGuid, 160);
FWX_PIN_OFF(FwxConnectEvent, IsSecondary, 176);
FWX_PIN_SIZE(FwxUdpDestinationEvent, 192);
FWX_PIN_OFF(FwxUdpDestinationEvent, Address, 0);
FWX_PIN_OFF(FwxUdpDestinationEvent, AddressLength, 128);
FWX_PIN_OFF(FwxUdpDestinationEvent, piConnection, 136);
FWX_PIN_OFF(FwxUdpDestinationEvent, FilterAccess, 144);
FWX_PIN_OFF(FwxUdpDestinationEvent, piPerRuleData, 152);
FWX_PIN_OFF(FwxUdpDestinationEvent, ProtocolGuid, 160);
FWX_PIN_OFF(FwxUdpDestinationEvent, IsSecondary, 176);
FWX_PIN_OFF(FwxUdpDestinationEvent, piUdpDestination, 184);
FWX_PIN_SIZE(FwxAcceptEvent, 320);
FWX_PIN_OFF(FwxAcceptEvent, RemoteAddress, 0);
FWX_PIN_OFF(FwxAcceptEvent, RemoteAddressLength, 128);
FWX_PIN_OFF(FwxAcceptEvent, LocalAddress, 136);
FWX_PIN_OFF(FwxAcceptEvent, LocalAddressLength, 264);
FWX_PIN_OFF(FwxAcceptEvent, piConnectionAccepted, 272);
FWX_PIN_OFF(FwxAcceptEvent, FilterAccess, 280);
FWX_PIN_OFF(FwxAcceptEvent, piPerRuleData, 288);
FWX_PIN_OFF(FwxAcceptEvent, ProtocolGuid, 296);
FWX_PIN_OFF(FwxAcceptEvent, IsSecondary, 312);
FWX_PIN_SIZE(FwxListenEvent, 160);
FWX_PIN_OFF(FwxListenEvent, Address, 0);
FWX_PIN_OFF(FwxListenEvent, AddressLength, 128);
FWX_PIN_OFF(FwxListenEvent, piConnection, 136);
FWX_PIN_OFF(FwxListenEvent, ProtocolGuid, 144);
FWX_PIN_SIZE(FwxEndConnectionEvent, 24);
FWX_PIN_OFF(FwxEndConnectionEvent, piConnection, 0);
FWX_PIN_OFF(FwxEndConnectionEvent, ProtocolGuid, 8);
FWX_PIN_SIZE(FwxEstablishedConnectionEvent, 24);
FWX_PIN_OFF(FwxEstablishedConnectionEvent, Protocol, 0);
FWX_PIN_OFF(FwxEstablishedConnectionEvent, piConnection, 8);
FWX_PIN_OFF(FwxEstablishedConnectionEvent, UserContext, 16);
FWX_PIN_SIZE(FwxFirewallEvent, 336);
FWX_PIN_OFF(FwxFirewallEvent, StructSize, 0);
FWX_PIN_OFF(FwxFirewallEvent, EventType, 4);
FWX_PIN_OFF(FwxFirewallEvent, EventSource, 8);
FWX_PIN_OFF(FwxFirewallEvent, Reserved, 12);
FWX_PIN_OFF(FwxFirewallEvent, Parameters, 16);
FWX_PIN_OFF(FwxFirewallEvent, Parameters.Connect, 16);
FWX_PIN_OFF(FwxFirewallEvent, Parameters.Bind, 16);
FWX_PIN_OFF(FwxFirewallEvent, Parameters.UdpDest, 16);
FWX_PIN_OFF(FwxFirewallEvent, Parameters.Accept, 16);
FWX_PIN_OFF(FwxFirewallEvent, Parameters.Listen, 16);
FWX_PIN_OFF(FwxFirewallEvent, Parameters.EndConnect, 16);
FWX_PIN_OFF(FwxFirewallEvent, Parameters.EstablishedConnection, 16);
FWX_PIN_SIZE(fwx_plugin_entry, 88);
FWX_PIN_OFF(fwx_plugin_entry, abi_version, 0);
FWX_PIN_OFF(fwx_plugin_entry, struct_size, 4);
FWX_PIN_OFF(fwx_plugin_entry, filter_guid, 8);
FWX_PIN_OFF(fwx_plugin_entry, name, 24);
FWX_PIN_OFF(fwx_plugin_entry, vendor, 32);
FWX_PIN_OFF(fwx_plugin_entry, version, 40);
FWX_PIN_OFF(fwx_plugin_entry, description, 48);
FWX_PIN_OFF(fwx_plugin_entry, allowed_events, 56);
FWX_PIN_OFF(fwx_plugin_entry, init, 64);
FWX_PIN_OFF(fwx_plugin_entry, deinit, 72);
FWX_PIN_OFF(fwx_plugin_entry, create_filter, 80);
FWX_PIN_SIZE(fwx_log_field, 24);
FWX_PIN_OFF(fwx_log_field, key, 0);
FWX_PIN_OFF(fwx_log_field, type, 8);
FWX_PIN_OFF(fwx_log_field, value, 16);
FWX_PIN_SIZE(fwx_log_record, 32);
FWX_PIN_OFF(fwx_log_record, struct_size, 0);
FWX_PIN_OFF(fwx_log_record, level, 4);
FWX_PIN_OFF(fwx_log_record, message, 8);
FWX_PIN_OFF(fwx_log_record, fields, 16);
FWX_PIN_OFF(fwx_log_record, n_fields, 24);
FWX_PIN_SIZE(fwx_firewall_options, 112);
FWX_PIN_OFF(fwx_firewall_options, struct_size, 0);
FWX_PIN_OFF(fwx_firewall_options, name, 8);
FWX_PIN_OFF(fwx_firewall_options, local_addresses, 16);
FWX_PIN_OFF(fwx_firewall_options, n_local_addresses, 24);
FWX_PIN_OFF(fwx_firewall_options, timeout_ms, 32);
FWX_PIN_OFF(fwx_firewall_options, port_min, 36);
FWX_PIN_OFF(fwx_firewall_options, port_max, 38);
FWX_PIN_OFF(fwx_firewall_options, max_permissions_per_session, 40);
FWX_PIN_OFF(fwx_firewall_options, max_permissions, 44);
FWX_PIN_OFF(fwx_firewall_options, max_ports_per_session, 48);
FWX_PIN_OFF(fwx_firewall_options, max_ports, 52);
FWX_PIN_OFF(fwx_firewall_options, max_sessions, 56);
FWX_PIN_OFF(fwx_firewall_options, log, 64);
FWX_PIN_OFF(fwx_firewall_options, log_arg, 72);
FWX_PIN_OFF(fwx_firewall_options, log_level, 80);
FWX_PIN_OFF(fwx_firewall_options, loopback_hosts, 84);
FWX_PIN_OFF(fwx_firewall_options, kernel_end_on_close, 88);
FWX_PIN_OFF(fwx_firewall_options, kernel_open_on_stop, 92);
FWX_PIN_OFF(fwx_firewall_options, plugin_soft_limit_ms, 96);
FWX_PIN_OFF(fwx_firewall_options, plugin_hard_limit_ms, 100);
FWX_PIN_OFF(fwx_firewall_options, log_repeat_limit, 104);
FWX_PIN_OFF(fwx_firewall_options, listen_shared, 108);
FWX_PIN_SIZE(fwx_firewall_stats, 28);
FWX_PIN_OFF(fwx_firewall_stats, struct_size, 0);
FWX_PIN_OFF(fwx_firewall_stats, sessions, 4);
FWX_PIN_OFF(fwx_firewall_stats, connections, 8);
FWX_PIN_OFF(fwx_firewall_stats, permissions, 12);
FWX_PIN_OFF(fwx_firewall_stats, bound_ports, 16);
FWX_PIN_OFF(fwx_firewall_stats, factories, 20);
FWX_PIN_OFF(fwx_firewall_stats, plugins, 24);
FWX_PIN_SIZE(fwx_config_error, 644);
FWX_PIN_OFF(fwx_config_error, file, 0);
FWX_PIN_OFF(fwx_config_error, line, 256);
FWX_PIN_OFF(fwx_config_error, key, 260);
FWX_PIN_OFF(fwx_config_error, message, 388);
FWX_PIN_SIZE(fwx_session_params, 48);
FWX_PIN_OFF(fwx_session_params, struct_size, 0);
FWX_PIN_OFF(fwx_session_params, source, 4);
FWX_PIN_OFF(fwx_session_params, client, 8);
FWX_PIN_OFF(fwx_session_params, client_len, 16);
FWX_PIN_OFF(fwx_session_params, gateway_internal, 24);
FWX_PIN_OFF(fwx_session_params, gateway_internal_len, 32);
FWX_PIN_OFF(fwx_session_params, user, 40);
FWX_PIN_SIZE(fwx_connection_params, 72);
FWX_PIN_OFF(fwx_connection_params, struct_size, 0);
FWX_PIN_OFF(fwx_connection_params, event, 4);
FWX_PIN_OFF(fwx_connection_params, protocol, 8);
FWX_PIN_OFF(fwx_connection_params, external_peer, 16);
FWX_PIN_OFF(fwx_connection_params, external_peer_len, 24);
FWX_PIN_OFF(fwx_connection_params, external_local, 32);
FWX_PIN_OFF(fwx_connection_params, external_local_len, 40);
FWX_PIN_OFF(fwx_connection_params, host_name, 48);
FWX_PIN_OFF(fwx_connection_params, flags, 56);
FWX_PIN_OFF(fwx_connection_params, published_server_len, 60);
FWX_PIN_OFF(fwx_connection_params, published_server, 64);
FWX_PIN_SIZE(fwx_flow, 40);
FWX_PIN_OFF(fwx_flow, struct_size, 0);
FWX_PIN_OFF(fwx_flow, protocol, 4);
FWX_PIN_OFF(fwx_flow, source, 8);
FWX_PIN_OFF(fwx_flow, source_len, 16);
FWX_PIN_OFF(fwx_flow, destination, 24);
FWX_PIN_OFF(fwx_flow, destination_len, 32);
FWX_PIN_SIZE(fwx_grant, 440);
FWX_PIN_OFF(fwx_grant, struct_size, 0);
FWX_PIN_OFF(fwx_grant, kind, 4);
FWX_PIN_OFF(fwx_grant, id, 8);
FWX_PIN_OFF(fwx_grant, protocol, 16);
FWX_PIN_OFF(fwx_grant, flags, 20);
FWX_PIN_OFF(fwx_grant, client, 24);
FWX_PIN_OFF(fwx_grant, target, 152);
FWX_PIN_OFF(fwx_grant, gateway, 280);
FWX_PIN_OFF(fwx_grant, backlog, 408);
FWX_PIN_OFF(fwx_grant, kernel_mode, 412);
FWX_PIN_OFF(fwx_grant, expires_ms, 416);
/* appended in 1.1 */
FWX_PIN_OFF(fwx_grant, sources, 424);
FWX_PIN_OFF(fwx_grant, n_sources, 432);
FWX_PIN_OFF(fwx_grant, source_flags, 436);
FWX_PIN_SIZE(fwx_grant_source, 136);
FWX_PIN_OFF(fwx_grant_source, flags, 128);
FWX_PIN_SIZE(fwx_policy_range, 40);
FWX_PIN_SIZE(fwx_policy_port_range, 8);
FWX_PIN_SIZE(fwx_policy_relation, 12);
FWX_PIN_SIZE(fwx_listen_spec, 304);
FWX_PIN_OFF(fwx_listen_spec, struct_size, 0);
FWX_PIN_OFF(fwx_listen_spec, id, 8);
FWX_PIN_OFF(fwx_listen_spec, protocol, 16);
FWX_PIN_OFF(fwx_listen_spec, address, 24);
FWX_PIN_OFF(fwx_listen_spec, server, 152);
FWX_PIN_OFF(fwx_listen_spec, full_proxy, 280);
FWX_PIN_OFF(fwx_listen_spec, protocol_guid, 284);
/* fwx/pump.h (1.1): the pump's options grow only at the end. */
FWX_PIN_SIZE(fwx_pump_options, 16);
FWX_PIN_OFF(fwx_pump_options, struct_size, 0);
FWX_PIN_OFF(fwx_pump_options, no_splice, 4);
FWX_PIN_OFF(fwx_pump_options, max_buffered, 8);
FWX_PIN_SIZE(fwx_backend, 128);
FWX_PIN_OFF(fwx_backend, version, 0);
FWX_PIN_OFF(fwx_backend, name, 8);
FWX_PIN_OFF(fwx_backend, app_data, 16);
FWX_PIN_OFF(fwx_backend, open, 24);
FWX_PIN_OFF(fwx_backend, close, 32);
FWX_PIN_OFF(fwx_backend, grant_add, 40);
FWX_PIN_OFF(fwx_backend, grant_remove, 48);
FWX_PIN_OFF(fwx_backend, listen, 56);
FWX_PIN_OFF(fwx_backend, unlisten, 64);
FWX_PIN_OFF(fwx_backend, relay, 72);
FWX_PIN_OFF(fwx_backend, kill, 80);
FWX_PIN_OFF(fwx_backend, create_socket, 88);
FWX_PIN_OFF(fwx_backend, list, 96);
FWX_PIN_OFF(fwx_backend, policy_changed, 104);
FWX_PIN_OFF(fwx_backend, grant_remove_many, 112);
FWX_PIN_OFF(fwx_backend, wrapped, 120);

FWX_PIN_SIZE(fwx_redirect_app, 32);
FWX_PIN_OFF(fwx_redirect_app, struct_size, 0);
FWX_PIN_OFF(fwx_redirect_app, pid, 4);
FWX_PIN_OFF(fwx_redirect_app, uid, 8);
FWX_PIN_OFF(fwx_redirect_app, reserved, 12);
FWX_PIN_OFF(fwx_redirect_app, cgroup_id, 16);
FWX_PIN_OFF(fwx_redirect_app, cgroup_path, 24);
FWX_PIN_SIZE(fwx_redirect_hop, 160);
FWX_PIN_OFF(fwx_redirect_hop, struct_size, 0);
FWX_PIN_OFF(fwx_redirect_hop, provider, 4);
FWX_PIN_OFF(fwx_redirect_hop, reserved, 20);
FWX_PIN_OFF(fwx_redirect_hop, handle, 24);
FWX_PIN_OFF(fwx_redirect_hop, target, 32);

/* The addresses the events carry are whole sockaddr_storage values. */
FWX_PIN_SIZE(struct sockaddr_storage, 128);
#endif /* x86_64 Linux */

/* Things the layout relies on whatever the platform. */
FWX_STATIC_ASSERT(sizeof(fwx_result) == 4, "fwx_result is 32 bits");
FWX_STATIC_ASSERT(sizeof(fwx_guid) == 16, "a GUID is 16 plain bytes");
FWX_STATIC_ASSERT(sizeof(FwxFilterAccess) == 4, "FwxFilterAccess is 32 bits");
FWX_STATIC_ASSERT(sizeof(FwxDataFilterPriorityClass) == 4, "FwxDataFilterPriorityClass is 32 bits");
FWX_STATIC_ASSERT(sizeof(fwx_grant_kind) == 4, "fwx_grant_kind is 32 bits");
FWX_STATIC_ASSERT(sizeof(fwx_redirect_state) == 4, "fwx_redirect_state is 32 bits");
FWX_STATIC_ASSERT(FWX_REDIRECT_NOT_REDIRECTED == 0 && FWX_REDIRECT_BY_SELF == 1 && FWX_REDIRECT_BY_OTHER == 2 &&
                      FWX_REDIRECT_PREVIOUSLY_BY_SELF == 3,
                  "the redirect states keep WFP's declared order");
FWX_STATIC_ASSERT(offsetof(fwx_plugin_entry, abi_version) == 0, "the ABI version comes first");
FWX_STATIC_ASSERT(offsetof(fwx_backend, version) == 0, "the backend version comes first");
FWX_STATIC_ASSERT(offsetof(FwxFirewallEvent, StructSize) == 0, "the event size comes first");

static int failures;

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);              \
            failures++;                                                                           \
        }                                                                                         \
    } while (0)

/* An IUnknown whose methods report which slot was called: the call wrappers must reach the
   method they are named after. */
static int last_slot;
static fwx_result probe_qi(IUnknown *This, const fwx_guid *riid, void **ppv)
{
    (void)This;
    (void)riid;
    *ppv = NULL;
    last_slot = 0;
    return FWX_E_NOINTERFACE;
}
static uint32_t probe_addref(IUnknown *This)
{
    (void)This;
    last_slot = 1;
    return 2;
}
static uint32_t probe_release(IUnknown *This)
{
    (void)This;
    last_slot = 2;
    return 1;
}

/* fwx/plugin_helpers.h: an object with one interface, and a filter made by the factory macro. */
typedef struct hobj {
    IUnknown iface;
    fwx_refcount refs;
} hobj;
static int hobj_destroyed;
static void hobj_destroy(hobj *o)
{
    hobj_destroyed++;
    free(o);
}
FWX_IUNKNOWN_IMPL(hobj, IUnknown, hobj, iface, refs, hobj_destroy, &IID_IFWXSession, &IID_IFWXConnection)
static const IUnknownVtbl hobj_vtbl = { hobj_QueryInterface, hobj_AddRef, hobj_Release };

typedef struct hfilter {
    IFWXFilter iface;
    fwx_refcount refs;
} hfilter;
static void hfilter_destroy(hfilter *f)
{
    hobj_destroyed++;
    free(f);
}
FWX_IUNKNOWN_IMPL(hfilter, IFWXFilter, hfilter, iface, refs, hfilter_destroy, &IID_IFWXFilter)
static const IFWXFilterVtbl hfilter_vtbl = { hfilter_QueryInterface, hfilter_AddRef, hfilter_Release, NULL, NULL, NULL };
FWX_PLUGIN_CREATE_FILTER(hfilter_create, hfilter, iface, refs, hfilter_vtbl)

#if !defined(__cplusplus) || __cplusplus >= 202002L
static fwx_result hfilter_create_entry(IFWXFilter **pp) { return hfilter_create(pp); }
FWX_PLUGIN_ENTRY(.filter_guid = FWX_GUID_INIT(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), .name = "probe",
                 .allowed_events = fwx_Connect_Tcp, .create_filter = hfilter_create_entry);
#endif

/* FWX_IUNKNOWN_IMPL_PART: two completions inside an object, sharing its count. */
typedef struct hpart hpart;
typedef struct hpart_dir {
    IFWXIOCompletion iface;
    hpart *o;
} hpart_dir;
struct hpart {
    IUnknown iface;
    fwx_refcount refs;
    hpart_dir dirs[2];
};
static void hpart_destroy(hpart *o)
{
    hobj_destroyed++;
    free(o);
}
FWX_IUNKNOWN_IMPL(hpart, IUnknown, hpart, iface, refs, hpart_destroy, &IID_IUnknown)
FWX_IUNKNOWN_IMPL_PART(hdir, IFWXIOCompletion, hpart_dir, iface, o, iface, hpart_AddRef, hpart_Release,
                       &IID_IFWXIOCompletion)
static const IUnknownVtbl hpart_vtbl = { hpart_QueryInterface, hpart_AddRef, hpart_Release };
static const IFWXIOCompletionVtbl hdir_vtbl = { hdir_QueryInterface, hdir_AddRef, hdir_Release, NULL };

/* A filter made by FWX_PLUGIN_SESSION_FILTERS with a session filter from
   FWX_PLUGIN_SESSION_FILTER. */
typedef struct hsf {
    FWX_PLUGIN_SESSION_FILTER_MEMBERS
} hsf;
static fwx_result hsf_handler(IFWXSessionFilter *This, const FwxFirewallEvent *ev)
{
    (void)This;
    (void)ev;
    return FWX_S_OK;
}
FWX_PLUGIN_SESSION_FILTER(hsf, hsf, hsf_handler)
FWX_PLUGIN_SESSION_FILTERS(hsession_create, fwx_Connect_Tcp, hsf_new)

static void check_plugin_helpers(void)
{
    hobj *o = (hobj *)calloc(1, sizeof *o);
    CHECK(o != NULL);
    if (o == NULL)
        return;
    o->iface.lpVtbl = &hobj_vtbl;
    fwx_refcount_init(&o->refs);
    CHECK(hobj_impl(&o->iface) == o);
    void *pv = NULL;
    CHECK(IUnknown_QueryInterface(&o->iface, &IID_IFWXConnection, &pv) == FWX_S_OK && pv == &o->iface);
    CHECK(IUnknown_QueryInterface(&o->iface, &IID_IUnknown, &pv) == FWX_S_OK && pv == &o->iface);
    CHECK(fwx_refcount_get(&o->refs) == 3);
    pv = &pv;
    CHECK(IUnknown_QueryInterface(&o->iface, &IID_IFWXFilter, &pv) == FWX_E_NOINTERFACE && pv == NULL);
    pv = &pv;
    CHECK(IUnknown_QueryInterface(&o->iface, NULL, &pv) == FWX_E_NOINTERFACE && pv == NULL);
    CHECK(IUnknown_QueryInterface(&o->iface, &IID_IUnknown, NULL) == FWX_E_POINTER);
    CHECK(fwx_refcount_get(&o->refs) == 3);
    CHECK(IUnknown_AddRef(&o->iface) == 4);
    CHECK(IUnknown_Release(&o->iface) == 3);
    CHECK(IUnknown_Release(&o->iface) == 2);
    CHECK(IUnknown_Release(&o->iface) == 1 && hobj_destroyed == 0);
    CHECK(IUnknown_Release(&o->iface) == 0 && hobj_destroyed == 1);

    IFWXFilter *f = NULL;
    CHECK(hfilter_create(NULL) == FWX_E_POINTER);
    CHECK(hfilter_create(&f) == FWX_S_OK && f != NULL && f->lpVtbl == &hfilter_vtbl);
    if (f == NULL)
        return;
    CHECK(fwx_refcount_get(&hfilter_impl(f)->refs) == 1);
    CHECK(IFWXFilter_QueryInterface(f, &IID_IFWXFilter, &pv) == FWX_S_OK && pv == f);
    CHECK(IFWXFilter_Release(f) == 1);
    CHECK(IFWXFilter_Release(f) == 0 && hobj_destroyed == 2);

    /* Parts: their references are the owner's, and the owner goes with the last of them. */
    hpart *po = (hpart *)calloc(1, sizeof *po);
    CHECK(po != NULL);
    if (po == NULL)
        return;
    po->iface.lpVtbl = &hpart_vtbl;
    fwx_refcount_init(&po->refs);
    for (int d = 0; d < 2; d++) {
        po->dirs[d].iface.lpVtbl = &hdir_vtbl;
        po->dirs[d].o = po;
    }
    CHECK(po->dirs[1].iface.lpVtbl->AddRef(&po->dirs[1].iface) == 2 && fwx_refcount_get(&po->refs) == 2);
    CHECK(po->dirs[0].iface.lpVtbl->QueryInterface(&po->dirs[0].iface, &IID_IFWXIOCompletion, &pv) == FWX_S_OK &&
          pv == &po->dirs[0].iface && fwx_refcount_get(&po->refs) == 3);
    pv = &pv;
    CHECK(po->dirs[0].iface.lpVtbl->QueryInterface(&po->dirs[0].iface, &IID_IFWXFilter, &pv) == FWX_E_NOINTERFACE &&
          pv == NULL);
    CHECK(po->dirs[0].iface.lpVtbl->QueryInterface(&po->dirs[0].iface, &IID_IUnknown, NULL) == FWX_E_POINTER);
    CHECK(po->dirs[0].iface.lpVtbl->Release(&po->dirs[0].iface) == 2);
    CHECK(po->dirs[1].iface.lpVtbl->Release(&po->dirs[1].iface) == 1 && hobj_destroyed == 2);
    CHECK(IUnknown_Release(&po->iface) == 0 && hobj_destroyed == 3);

    /* Without a firewall (no FilterInit yet) the filter attaches nothing, and says so. */
    CHECK(hsession_create(&f) == FWX_S_OK && f != NULL);
    if (f == NULL)
        return;
    FwxFilterHookEvents hooks;
    memset(&hooks, 0, sizeof hooks);
    CHECK(IFWXFilter_FilterInit(f, NULL, &hooks) == FWX_E_POINTER && hooks.dwGlobalEvents == 0);
    IFWXSessionFilter *sf = (IFWXSessionFilter *)&pv;
    CHECK(IFWXFilter_AttachToSession(f, NULL, &sf, &hooks) == FWX_E_POINTER && sf == NULL);
    CHECK(IFWXFilter_AttachToSession(f, NULL, NULL, &hooks) == FWX_E_POINTER);
    CHECK(IFWXFilter_FilterShutdown(f) == FWX_S_OK);
    CHECK(IFWXFilter_QueryInterface(f, &IID_IFWXFilter, &pv) == FWX_S_OK && pv == f);
    CHECK(IFWXFilter_Release(f) == 1);
    CHECK(IFWXFilter_Release(f) == 0);
#if !defined(__cplusplus) || __cplusplus >= 202002L
    CHECK(fwx_entry.abi_version == FWX_ABI_VERSION && fwx_entry.struct_size == sizeof(fwx_plugin_entry));
    CHECK(fwx_entry.create_filter == hfilter_create_entry && strcmp(fwx_entry.name, "probe") == 0);
#endif
}

int main(void)
{
    /* The values the original SDK documents (the result table in fwx/common.h keeps them). */
    CHECK(FWX_E_TERMINATING == (int32_t)0xC0040001);
    CHECK(FWX_E_ADDRESS_NOT_ALLOWED == (int32_t)0xC004002E);
    CHECK(FWX_E_BUFFERFULL == (int32_t)0xC0040007);
    CHECK(FWX_E_NOINTERFACE == (int32_t)0x80004002);
    CHECK(FWX_FROM_WIN32(52) == FWX_E_DUP_NAME);
    CHECK(FWX_FROM_WIN32(87) == FWX_E_INVALIDARG);
    CHECK(FWX_FROM_WIN32(10022) == FWX_E_WSAEINVAL);
    CHECK(FWX_FROM_WIN32(10048) == FWX_E_ADDRINUSE);
    CHECK(FWX_S_OK == 0 && FWX_S_FALSE == 1);
    CHECK(FWX_SUCCEEDED(FWX_S_FALSE) && !FWX_FAILED(FWX_S_FALSE));
    CHECK(FWX_FAILED(FWX_E_FAIL) && !FWX_SUCCEEDED(FWX_E_FAIL));
    CHECK(FWX_PROTOCOL_TCP == IPPROTO_TCP && FWX_PROTOCOL_UDP == IPPROTO_UDP);

    /* The ABI version packs major.minor. */
    CHECK(FWX_ABI_VERSION >> 16 == FWX_ABI_VERSION_MAJOR);
    CHECK((FWX_ABI_VERSION & 0xFFFFu) == FWX_ABI_VERSION_MINOR);

    /* One version: the headers say meson's project version (FWX_EXPECT_VERSION, from
       tests/headers/meson.build), and the ABI is its major.minor. */
#ifdef FWX_EXPECT_VERSION
    {
        char v[32];
        snprintf(v, sizeof v, "%d.%d.%d", FWX_VERSION_MAJOR, FWX_VERSION_MINOR, FWX_VERSION_PATCH);
        CHECK(strcmp(v, FWX_EXPECT_VERSION) == 0);
        CHECK(strcmp(FWX_VERSION_STRING, FWX_EXPECT_VERSION) == 0);
    }
#endif
    CHECK(FWX_VERSION_HEX == ((FWX_VERSION_MAJOR << 16) | (FWX_VERSION_MINOR << 8) | FWX_VERSION_PATCH));
    CHECK(FWX_ABI_VERSION_MAJOR == FWX_VERSION_MAJOR && FWX_ABI_VERSION_MINOR == FWX_VERSION_MINOR);

    /* Hook bits do not overlap. */
    CHECK((FWX_EVENT_TYPE_MASK & FWX_ALL_SOURCES) == 0);
    CHECK((FWX_EVENT_TYPE_MASK & (fwxAnyProtocol | fwxAssociatedProtocolsAllConnections)) == 0);
    CHECK((FWX_ALL_SOURCES & (fwxAnyProtocol | fwxAssociatedProtocolsAllConnections)) == 0);

    /* IIDs: COM's IUnknown in text byte order, and every fwx IID distinct. */
    static const uint8_t iunknown[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46 };
    CHECK(memcmp(IID_IUnknown.bytes, iunknown, 16) == 0);
    const fwx_guid *iids[] = { &IID_IUnknown,        &IID_IClassFactory,      &IID_IFWXFilter,
                               &IID_IFWXSessionFilter, &IID_IFWXDataFilter,   &IID_IFWXFirewall,
                               &IID_IFWXSession,      &IID_IFWXConnection,    &IID_IFWXFirewallAction,
                               &IID_IFWXIpFilter,     &IID_IFWXIOBuffer,      &IID_IFWXSocket,
                               &IID_IFWXNetworkSocket, &IID_IFWXIOCompletion, &IID_IFWXAcceptCompletion,
                               &IID_IFWXUdpDestination, &IID_IFWXConnection2, &IID_IFWXHostLog };
    const size_t n_iids = sizeof iids / sizeof iids[0];
    for (size_t i = 0; i < n_iids; i++) {
        CHECK(!fwx_guid_equal(iids[i], &FWX_GUID_NULL));
        for (size_t j = i + 1; j < n_iids; j++)
            CHECK(!fwx_guid_equal(iids[i], iids[j]));
    }

    /* The IUnknown wrappers reach the right slots. */
    static const IUnknownVtbl probe_vtbl = { probe_qi, probe_addref, probe_release };
    IUnknown probe = { &probe_vtbl };
    void *pv = &probe;
    last_slot = -1;
    CHECK(IUnknown_QueryInterface(&probe, &IID_IFWXSession, &pv) == FWX_E_NOINTERFACE && last_slot == 0);
    CHECK(pv == NULL);
    CHECK(IUnknown_AddRef(&probe) == 2 && last_slot == 1);
    CHECK(IUnknown_Release(&probe) == 1 && last_slot == 2);

    check_plugin_helpers();

    if (failures != 0) {
        fprintf(stderr, "%d header check(s) failed\n", failures);
        return 1;
    }
    return 0;
}
