/*
 * fwx-gateway: what it takes to run as a system service (systemd or a syslog pipe): log lines
 * with a syslog priority for journald, and readiness notifications (sd_notify) for
 * Type=notify units. Independent of the rest of the gateway; no libsystemd.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_GATEWAY_SERVICE_H
#define FWX_GATEWAY_SERVICE_H

#include <fwx/fwx.h>
#include <stdbool.h>
#include <stdio.h>

/**
 * True if @p fd is the stream systemd connected to the journal: $JOURNAL_STREAM holds
 * "DEVICE:INODE" and they are @p fd's (systemd.exec(5): a variable set but not matching means
 * the output was redirected since, by a shell or a parent, and the journal is not there).
 */
bool svc_journal_stream(int fd);

/** The syslog priority of a level: error 3, warn 4, info 6, debug 7 (<syslog.h>'s LOG_*). */
int svc_syslog_priority(fwx_log_level level);

/**
 * Writes one log line in the form journald and syslog readers parse from a stream: `<N>` and
 * the message, no timestamp of its own (the journal stamps each line). A message with line
 * breaks becomes several lines, each with the prefix, so none falls back to the default
 * priority.
 */
void svc_journal_line(FILE *f, fwx_log_level level, const char *msg);

/**
 * Sends @p state (such as "READY=1", "RELOADING=1", "STOPPING=1"; several separated by "\n")
 * to the service manager over the datagram socket named by $NOTIFY_SOCKET (a path, or
 * "@name" for the abstract namespace), as sd_notify(3) does. Without $NOTIFY_SOCKET, nothing
 * happens and 0 is returned: a gateway not started by systemd does not care.
 * @return 0 if sent or not wanted, -1 if $NOTIFY_SOCKET is set but the message could not be
 *   sent (errno says why).
 */
int svc_notify(const char *state);

/**
 * svc_notify("RELOADING=1") with MONOTONIC_USEC=, the time of the reload on CLOCK_MONOTONIC,
 * which systemd 253's Type=notify-reload requires and older managers ignore. Send
 * "READY=1" when the reload is done, whether or not it succeeded.
 */
int svc_notify_reloading(void);

#endif /* FWX_GATEWAY_SERVICE_H */
