/*
 * fwx - log lines with fields (lib/core/log.c). Internal; not installed.
 *
 * Every line of the core and of the plugins goes through fwx__log_emit: the host's record sink
 * (fwx_firewall_set_log_sink) gets the line and its fields, a text sink the line alone.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_UTIL_LOG_H
#define FWX_UTIL_LOG_H

#include "core/internal.h"

/* What a line is about; any member may be NULL. The session defaults to the connection's. */
typedef struct fwx__log_about {
    const fwx__plugin *plugin;
    fwx__session *session;
    fwx__conn *conn;
    const char *rule;  /* overrides conn->rule */
    uint32_t event;    /* an event type, 0 for none */
    bool bytes;        /* the connection's byte counts go along (the line that ends it) */
    bool no_fold;      /* never folded: a line from another thread (the watchdog's) */
    bool fold_format;  /* an info line folded by its format, as warnings are: a repeated condition */
} fwx__log_about;

/* Emits `line` (complete, prefix included) with the fields of `about`, then `extra` (a plugin's:
   validated by the caller; FWX_LOG_ADDRESS allowed). Applies the level filter, then folds
   repeats: more than FWX__LOG_FOLD_BURST lines with the same text in a second become one
   "repeated K times" line, written when that second is over and a line of any kind comes, or
   at close (fwx__log_fold_flush). The core's warnings and errors (fwx__logv) are keyed by their
   format, so a condition repeated with other addresses in it folds too; other lines by text. */
void fwx__log_emit(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about, const fwx_log_field *extra,
                   size_t n_extra, const char *line);
/* "fwx: " + the formatted text, about `about` (may be NULL). */
void fwx__logv(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about, const char *fmt, va_list ap);
void fwx__log_at(fwx_firewall *fw, fwx_log_level level, const fwx__log_about *about, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* As fwx__log (core/internal.h): the level is tested before the arguments are evaluated. */
#define fwx__log_at(fw, level, ...) FWX__LOG_IF(fwx__log_at, fw, level, __VA_ARGS__)
/* Writes the pending "repeated K times" lines (at firewall close). */
void fwx__log_fold_flush(fwx_firewall *fw);
/* A line about a connection or a session: its ids, client, peer and rule go along as fields.
   Through the fwx__log_at macro, the arguments are evaluated only when the line reaches a
   sink: formatting two addresses for an info line nobody reads was a third of the core's cost
   of admitting a kernel flow (bench/README.md, ctfilter). */
#define fwx__log_conn(c, level, ...) \
    fwx__log_at((c)->session->fw, (level), &(fwx__log_about){.conn = (c)}, __VA_ARGS__)
#define fwx__log_session(s, level, ...) \
    fwx__log_at((s)->fw, (level), &(fwx__log_about){.session = (s)}, __VA_ARGS__)

/* "Connect_Tcp", "AcceptedConnection", ...: an event type's name as sdk.h spells it after
   `fwx_`; "event 0x..." in buf for anything else. */
#define FWX__EVENT_NAME_LEN 32
const char *fwx__event_name(uint32_t type, char buf[FWX__EVENT_NAME_LEN]);

/* IFWXFirewall::QueryInterface(IID_IFWXHostLog): a new log object (+1) for the plugin whose
   call runs now, or the core's (lib/core/hostlog.c). */
fwx_result fwx__hostlog_new(fwx_firewall *fw, IFWXHostLog **out);

#endif /* FWX_UTIL_LOG_H */
