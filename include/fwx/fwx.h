/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/fwx.h
 * @brief The one header to include: the SDK, the plugin entry, embedding and backends.
 *
 * @mainpage fwx
 * fwx is an embeddable C library that re-creates, on Linux, the Firewall Extensibility SDK of
 * ISA Server 2004 / Forefront TMG: filter plugins receive session events and ask the core for
 * secondary connections (IFWXSession::AllowFutureConnect, IFWXSession::BindForClient,
 * IFWXSession::RedirectConnections, IFWXSession::RetroactiveAllowBind), which the core checks
 * against its rules and policy and a backend carries out.
 *
 * - @ref sdk : the interfaces filters implement and use (fwx/sdk.h)
 * - @ref plugins : the plugin entry point (fwx/plugin.h)
 * - @ref embedding : hosting fwx in a proxy (fwx/host.h)
 * - @ref backends : what steers sockets (fwx/backend.h); @ref proxy_backend : the "proxy"
 *   backend's SOCKS5 forward mode (fwx/proxy.h)
 * - @ref pump : the data path: a connection's data-filter chain and fwx's pump (fwx/pump.h)
 * - @ref redirect_api : redirect handles, records and states across cooperating proxies
 *   (fwx/redirect.h; the guide is @ref redirect "doc/redirect.md")
 * - @ref logging : log levels, structured fields, the host's record sink (fwx/log.h) and
 *   ::IFWXHostLog, through which plugins log (fwx/sdk.h); ::IFWXTimer, a plugin's timer
 * - @ref versions : one version for the library, its SONAME and the plugin ABI (fwx/version.h)
 * - @ref results, @ref threading : result codes, thread and handler-state tags (fwx/common.h)
 */
#ifndef FWX_FWX_H
#define FWX_FWX_H

#include <fwx/common.h>
#include <fwx/log.h>
#include <fwx/sdk.h>
#include <fwx/plugin.h>
#include <fwx/host.h>
#include <fwx/backend.h>
#include <fwx/policy_view.h>
#include <fwx/proxy.h>
#include <fwx/pump.h>
#include <fwx/redirect.h>

#endif /* FWX_FWX_H */
