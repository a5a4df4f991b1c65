/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/log.h
 * @brief Log levels, structured log fields and the host's record sink.
 *
 * @page logging Logging
 * Everything fwx logs, and everything a plugin logs through ::IFWXHostLog (fwx/sdk.h), goes
 * to one place the host chose:
 * - a **text sink**, fwx_firewall_options::log (fwx/host.h): one line per call, such as
 *   `fwx: session 4: opened for 10.0.0.8` or `ftp: session 10.0.0.8: refused "PORT ..."`;
 *   stderr when the host set none;
 * - or a **record sink**, set with fwx_firewall_set_log_sink(): the same line as
 *   ::fwx_log_record::message plus the **fields** it is about, so that a host writing JSON (or
 *   journald, or syslog structured data) keeps them apart instead of parsing text.
 *
 * The core names its fields with these keys (a line has the ones that apply):
 * | key | type | what |
 * |---|---|---|
 * | `plugin` | string | the plugin that logged the line, or that the line is about |
 * | `session` | uint | the session's id (fwxctl's) |
 * | `client` | string | the session's client address |
 * | `connection` | uint | the connection's id |
 * | `peer` | string | the connection's external peer, `ip:port` |
 * | `rule` | string | the policy rule that decided |
 * | `event` | string | an event's name, such as `AcceptedConnection` |
 * | `bytes_in`, `bytes_out` | uint | a connection's byte counts, on the line that ends it |
 *
 * Plugins add their own (keys in lower case, `[a-z0-9_]`, at most 31 characters, not `ts`,
 * `level` or `msg`, which sinks use for the line itself).
 *
 * A log line never blocks or fails the traffic it is about: a sink must return quickly.
 */
#ifndef FWX_LOG_H
#define FWX_LOG_H

#include <fwx/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fwx_firewall;
struct sockaddr;

/** Log levels. */
typedef enum fwx_log_level {
    FWX_LOG_ERROR = 0, /**< something failed */
    FWX_LOG_WARN = 1,  /**< refused input, degraded service */
    FWX_LOG_INFO = 2,  /**< session and connection events */
    FWX_LOG_DEBUG = 3, /**< everything */
    /** @cond */
    FWX__LOG_FORCE_32 = 0x7FFFFFFF
    /** @endcond */
} fwx_log_level;

/** The type of a ::fwx_log_field's value. @since 1.1 */
typedef enum fwx_log_type {
    FWX_LOG_STRING = 1,  /**< fwx_log_field::value.string: UTF-8 text, NUL-terminated */
    FWX_LOG_INT = 2,     /**< fwx_log_field::value.i */
    FWX_LOG_UINT = 3,    /**< fwx_log_field::value.u */
    FWX_LOG_ADDRESS = 4, /**< fwx_log_field::value.address: IPv4 or IPv6 with its port. Plugins
                              only: a record sink receives it as a FWX_LOG_STRING */
    /** @cond */
    FWX__LOG_TYPE_FORCE_32 = 0x7FFFFFFF
    /** @endcond */
} fwx_log_type;

/**
 * @brief One named value of a log line. Everything it points to is borrowed for the call.
 * @since 1.1
 */
typedef struct fwx_log_field {
    /** The name: `[a-z0-9_]`, 1 to 31 characters; not `ts`, `level` or `msg`. */
    const char *key;
    /** Which member of value is set. */
    fwx_log_type type;
    /** The value. */
    union {
        const char *string;              /**< FWX_LOG_STRING (NULL logs as an empty string) */
        int64_t i;                       /**< FWX_LOG_INT */
        uint64_t u;                      /**< FWX_LOG_UINT */
        const struct sockaddr *address;  /**< FWX_LOG_ADDRESS (length from its family) */
    } value;
} fwx_log_field;

/** @name Field constructors, for arrays of ::fwx_log_field (C99 designated initializers; C only) */
/** @{ */
#ifndef __cplusplus
/** A string field. */
#define FWX_LOG_FIELD_STRING(k, v) ((fwx_log_field){ .key = (k), .type = FWX_LOG_STRING, .value = { .string = (v) } })
/** A signed integer field. */
#define FWX_LOG_FIELD_INT(k, v) ((fwx_log_field){ .key = (k), .type = FWX_LOG_INT, .value = { .i = (int64_t)(v) } })
/** An unsigned integer field. */
#define FWX_LOG_FIELD_UINT(k, v) ((fwx_log_field){ .key = (k), .type = FWX_LOG_UINT, .value = { .u = (uint64_t)(v) } })
/** An address field. */
#define FWX_LOG_FIELD_ADDRESS(k, v) ((fwx_log_field){ .key = (k), .type = FWX_LOG_ADDRESS, .value = { .address = (v) } })
#endif
/** @} */

/**
 * @brief One log line as a record sink receives it. Borrowed for the call only.
 * Handed out (@ref struct_sizes): read a field only when struct_size covers it; first size 28
 * bytes, through n_fields.
 * @since 1.1
 */
typedef struct fwx_log_record {
    /** sizeof(fwx_log_record) as the library saw it; later versions append fields. */
    uint32_t struct_size;
    /** The line's level. */
    fwx_log_level level;
    /** The whole line, as a text sink would get it (`fwx: ...`, `ftp: ...`); never NULL. */
    const char *message;
    /** The fields, in order: the core's first (see @ref logging), then the plugin's. Only
        FWX_LOG_STRING, FWX_LOG_INT and FWX_LOG_UINT; keys are unique within a record. */
    const fwx_log_field *fields;
    /** Number of entries in fields. */
    uint32_t n_fields;
} fwx_log_record;

/**
 * Receives one log record. Runs on the firewall's loop thread, synchronously inside the call
 * that logged; it must not call back into fwx. One exception: with a plugin time limit set
 * (fwx_firewall_options::plugin_soft_limit_ms), the line that names a plugin overrunning it
 * comes from the watchdog's thread while the loop thread is still inside the plugin, so a sink
 * that shares state with other threads' logging must lock it (stdio's FILE locks suffice).
 * @param arg the arg given to fwx_firewall_set_log_sink().
 * @param record borrowed, valid for the call only.
 * @since 1.1
 */
typedef void (*fwx_log_sink_fn)(void *arg, const fwx_log_record *record);

/**
 * @brief Sends the firewall's log lines, and its plugins', to @p sink as records. [loop-thread]
 *
 * Replaces fwx_firewall_options::log for every line after the call (lines above
 * fwx_firewall_options::log_level still never arrive). Set it right after fwx_firewall_new(),
 * before plugins load. NULL goes back to the text sink.
 * @param fw the firewall (declared in fwx/host.h). @param sink the sink, or NULL.
 * @param arg passed to @p sink.
 * @return FWX_S_OK, FWX_E_POINTER (@p fw NULL).
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_set_log_sink(struct fwx_firewall *fw, fwx_log_sink_fn sink, void *arg);

/**
 * @brief Changes the level above which the firewall's and its plugins' lines are dropped
 *        (fwx_firewall_options::log_level), from the next line on. [loop-thread]
 *
 * For a host that re-reads its configuration: plugins that asked IFWXHostLog::IsEnabled before
 * the call may have cached the answer for a line they are building; every line after the call is
 * filtered by the new level.
 * @param fw the firewall (declared in fwx/host.h). @param level FWX_LOG_ERROR..FWX_LOG_DEBUG.
 * @return FWX_S_OK, FWX_E_POINTER (@p fw NULL), FWX_E_INVALIDARG (@p level out of range,
 *         nothing changed).
 * @since 1.1
 */
FWX_API fwx_result fwx_firewall_set_log_level(struct fwx_firewall *fw, fwx_log_level level);

/**
 * @brief The lower-case name of a level ("error", "warn", "info", "debug"). [any-thread]
 * @return a static string; "info" for values out of range.
 * @since 1.1
 */
FWX_API const char *fwx_log_level_name(fwx_log_level level);

#ifdef __cplusplus
}
#endif

#endif /* FWX_LOG_H */
