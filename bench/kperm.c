/*
 * kperm: the fwx side of the kernel-path benchmark (bench/kernel.sh). Not part of the build or
 * of `meson test`; kernel.sh compiles it into its temp dir against the build directory's libfwx
 * and the public headers (include/fwx/) only.
 *
 * Runs in the gateway namespace. It opens a firewall on a uv loop with a NAT policy (internal
 * network --internal, relationship internal -> external "nat") and the "nft" backend, then:
 *
 *   kperm --name N --local GW_IN,GW_OUT --internal CIDR --client IP --allow IP:PORT [--allow ...]
 *       a session for the client with a primary connection to the first target's IP on port 21
 *       (reported, as a transparent FTP gateway would), then IFWXSession_AllowFutureConnect with
 *       FWX_FLAG_ALLOW_MULTIPLE for each IP:PORT: kernel-mode secondary connections, carried by
 *       the kernel as elements of fwx's nftables sets (the benchmark's "fwx-kernel" row).
 *
 *   kperm --name N --local GW_IN,GW_OUT --internal CIDR --plugin PATH --filter GUID
 *       transparent interception: port 21 is bound to the filter GUID in the policy, so the nft
 *       backend redirects port-21 connections into fwx's user-mode path where the plugin sees
 *       them (the FTP filter: PASV -> AllowFutureConnect -> a kernel-mode data connection).
 *
 *   --grants N (either form): before "ready", N other permissions outstanding: sessions of
 *       clients that never connect (10.99.1.60 and up, inside --internal; 64 grants each, the
 *       core's default cap per session), each with a primary connection to port 9 of
 *       --bulk-server (default 10.99.2.2), and one-shot AllowFutureConnect to ports 20000.. of
 *       that server, each timed ("grants_add_p50_us", "_p99_us", "_total_ms"): the row with
 *       10,000 outstanding grants (set-up latency must not grow with them).
 *
 * Then it serves its loop until SIGTERM/SIGINT or --seconds (default 600), prints what fwx saw
 * ("key value" lines on stdout) and closes the firewall (which deletes its table: kernel_open_on_stop).
 * Prints "ready TABLE" on stdout (flushed) once everything is in place.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <fwx/fwx.h>

#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAX_ALLOW 8
#define PER_SESSION 64     /* fwx_firewall_options::max_permissions_per_session's default */
#define BULK_SESSIONS 190  /* clients 10.99.1.60-249 */

static struct {
    uv_loop_t loop;
    fwx_firewall *fw;
    uv_signal_t sigterm, sigint;
    uv_timer_t deadline;
    IFWXSession *session, *bulk[BULK_SESSIONS];
    IFWXConnection *ctl, *bulk_ctl[BULK_SESSIONS];
    int verbose;
    /* counted from the firewall's events */
    unsigned kernel_now, kernel_max, user_now, user_secondary_max, kernel_seen;
} K;

static void log_line(void *arg, fwx_log_level level, const char *msg)
{
    (void)arg;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    fprintf(stderr, "%lld.%03ld [%d] %s\n", (long long)t.tv_sec, t.tv_nsec / 1000000, (int)level, msg);
}

static int parse_addr(const char *text, uint16_t default_port, struct sockaddr_storage *out)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    unsigned port = default_port;
    memset(out, 0, sizeof *out);
    if (colon != NULL) {
        size_t n = (size_t)(colon - text);
        if (n >= sizeof host)
            return -1;
        memcpy(host, text, n);
        host[n] = '\0';
        port = (unsigned)atoi(colon + 1);
    } else {
        snprintf(host, sizeof host, "%s", text);
    }
    struct sockaddr_in *a = (struct sockaddr_in *)out;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &a->sin_addr) == 1 && port <= 65535 ? 0 : -1;
}

/* Secondary connections counted as they open and close (an event sink: O(1) each). A listing
   of every connection once a second cost fwx's loop O(open connections), and a TCP flow's
   connection stays open through TIME_WAIT: tens of thousands in a ctfilter run, counted as
   fwx's CPU per connection (bench/README.md). */
static void on_event(void *arg, const fwx_event *ev)
{
    (void)arg;
    if ((ev->type != FWX_EVENT_CONNECTION_OPENED && ev->type != FWX_EVENT_CONNECTION_CLOSED) || ev->name == NULL ||
        strcmp(ev->name, "secondary") != 0)
        return;
    bool opened = ev->type == FWX_EVENT_CONNECTION_OPENED;
    if (ev->kernel_mode) {
        if (opened) {
            K.kernel_seen++;
            if (++K.kernel_now > K.kernel_max)
                K.kernel_max = K.kernel_now;
        } else if (K.kernel_now > 0) {
            K.kernel_now--;
        }
    } else if (opened) {
        if (++K.user_now > K.user_secondary_max)
            K.user_secondary_max = K.user_now;
    } else if (K.user_now > 0) {
        K.user_now--;
    }
}

static void on_closed(fwx_firewall *fw, void *arg)
{
    (void)fw;
    (void)arg;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int stopping;
static void stop(void)
{
    if (stopping)
        return;
    stopping = 1;
    fwx_firewall_stats st = {.struct_size = sizeof st};
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    fwx_firewall_get_stats(K.fw, &st);
    printf("kernel_secondaries_max %u\nkernel_secondaries_seen %u\nkernel_secondaries_open %u\n"
           "user_secondaries_max %u\npermissions %u\nsessions %u\n",
           K.kernel_max, K.kernel_seen, K.kernel_now, K.user_secondary_max, st.permissions, st.sessions);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("cpu_s %.3f\n", (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                               ru.ru_stime.tv_usec / 1e6);
    fflush(stdout);
    for (int i = 0; i < BULK_SESSIONS; i++) {
        if (K.bulk[i] == NULL)
            continue;
        fwx_connection_close(K.bulk_ctl[i]);
        fwx_session_close(K.bulk[i]);
        IFWXSession_Release(K.bulk[i]);
        K.bulk[i] = NULL;
    }
    if (K.session != NULL) {
        fwx_connection_close(K.ctl);
        fwx_session_close(K.session);
        IFWXSession_Release(K.session);
        K.session = NULL;
    }
    fwx_firewall_close(K.fw, on_closed, NULL);
    uv_timer_stop(&K.deadline);
    uv_close((uv_handle_t *)&K.sigterm, NULL);
    uv_close((uv_handle_t *)&K.sigint, NULL);
    uv_close((uv_handle_t *)&K.deadline, NULL);
}

static void on_signal(uv_signal_t *s, int sig)
{
    (void)s;
    (void)sig;
    stop();
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "kperm: --seconds reached\n");
    stop();
}

/* A NAT session of client (gateway address gi) with a primary TCP connection to srv. */
static fwx_result open_session(struct sockaddr_storage *c, struct sockaddr_storage *gi, struct sockaddr_storage *srv,
                               IFWXSession **s, IFWXConnection **ctl)
{
    fwx_session_params sp = {sizeof sp, fwxSourceNAT, (struct sockaddr *)c, sizeof(struct sockaddr_in),
                             (struct sockaddr *)gi, sizeof(struct sockaddr_in), NULL};
    fwx_result hr = fwx_session_open(K.fw, &sp, s);
    if (FWX_FAILED(hr))
        return hr;
    fwx_connection_params cp;
    memset(&cp, 0, sizeof cp);
    cp.struct_size = sizeof cp;
    cp.event = fwx_Connect_Tcp;
    cp.protocol = FWX_PROTOCOL_TCP;
    cp.external_peer = (struct sockaddr *)srv;
    cp.external_peer_len = sizeof(struct sockaddr_in);
    return fwx_connection_open(*s, &cp, ctl);
}

static void usage(void)
{
    fprintf(stderr, "usage: kperm --name N --local GW_IN,GW_OUT --internal CIDR\n"
                    "             (--client IP --allow IP:PORT [--allow IP:PORT]... | --plugin PATH --filter GUID)\n"
                    "             [--grants N [--bulk-server IP]] [--seconds S] [--verbose]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *name = "kbench", *local = NULL, *internal = NULL, *client = NULL, *plugin = NULL, *filter = NULL;
    const char *allow[MAX_ALLOW];
    int n_allow = 0;
    double seconds = 600;
    long grants = 0;
    const char *bulk_server = "10.99.2.2";
    static const struct option opts[] = {
        {"name", required_argument, 0, 'n'},   {"local", required_argument, 0, 'l'},
        {"internal", required_argument, 0, 'i'}, {"client", required_argument, 0, 'c'},
        {"allow", required_argument, 0, 'a'},  {"plugin", required_argument, 0, 'p'},
        {"filter", required_argument, 0, 'f'}, {"seconds", required_argument, 0, 's'},
        {"verbose", no_argument, 0, 'v'},      {"grants", required_argument, 0, 'g'},
        {"bulk-server", required_argument, 0, 'b'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'n': name = optarg; break;
        case 'l': local = optarg; break;
        case 'i': internal = optarg; break;
        case 'c': client = optarg; break;
        case 'a':
            if (n_allow == MAX_ALLOW)
                usage();
            allow[n_allow++] = optarg;
            break;
        case 'p': plugin = optarg; break;
        case 'f': filter = optarg; break;
        case 's': seconds = atof(optarg); break;
        case 'v': K.verbose = 1; break;
        case 'g': grants = atol(optarg); break;
        case 'b': bulk_server = optarg; break;
        default: usage();
        }
    }
    if (local == NULL || internal == NULL || (plugin == NULL && (client == NULL || n_allow == 0)) ||
        (plugin != NULL && filter == NULL) || seconds <= 0 || seconds > 3600 || grants < 0 ||
        grants > (long)BULK_SESSIONS * PER_SESSION)
        usage();
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_storage locals[2];
    char l0[64], *comma;
    snprintf(l0, sizeof l0, "%s", local);
    if ((comma = strchr(l0, ',')) == NULL)
        usage();
    *comma = '\0';
    if (parse_addr(l0, 0, &locals[0]) != 0 || parse_addr(comma + 1, 0, &locals[1]) != 0)
        usage();

    if (uv_loop_init(&K.loop) != 0)
        return 1;
    fwx_firewall_options fo;
    fwx_firewall_options_init(&fo);
    fo.name = name;
    fo.local_addresses = locals;
    fo.n_local_addresses = 2;
    fo.log = log_line;
    fo.log_level = K.verbose ? FWX_LOG_DEBUG : FWX_LOG_WARN;
    /* kernel.sh measures plain kernel forwarding in this namespace after kperm exits: leave
       it open rather than closed (closed is the default). */
    fo.kernel_open_on_stop = 1;
    fo.max_permissions_per_session = PER_SESSION;
    fwx_result hr = fwx_firewall_new(&K.loop, &fo, &K.fw);
    if (FWX_FAILED(hr)) {
        fprintf(stderr, "kperm: fwx_firewall_new: %s\n", fwx_err_name(hr));
        return 1;
    }
    fwx_firewall_set_event_sink(K.fw, on_event, NULL);
    if (plugin != NULL) {
        hr = fwx_firewall_load_plugin(K.fw, plugin, NULL);
        if (FWX_FAILED(hr)) {
            fprintf(stderr, "kperm: load %s: %s (%s)\n", plugin, fwx_err_name(hr), fwx_firewall_last_error(K.fw));
            return 1;
        }
    }
    /* The policy: internal -> external NAT, port 21 (bound to the filter in --plugin mode). In
       --allow mode the port-21 protocol is the primary connection's, and AllowFutureConnect's
       targets are checked against its rule. */
    char policy[2048];
    snprintf(policy, sizeof policy,
             "networks = { internal = { ranges = [ \"%s\" ]; }; };\n"
             "relationships = ( { from = \"internal\"; to = \"external\"; type = \"nat\"; } );\n"
             "protocols = ( { name = \"ctl\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-0000000b0021}\"; protocol = \"tcp\";"
             " port = 21; direction = \"outbound\";%s%s%s }%s );\n"
             "rules = ( { name = \"ctl out\"; action = \"allow\"; from = [ \"internal\" ]; to = [ \"external\" ];"
             " protocols = [ \"ctl\"%s ]; } );\n",
             internal, filter ? " filters = [ \"" : "", filter ? filter : "", filter ? "\" ];" : "",
             grants > 0 ? ", { name = \"bulk\"; guid = \"{6a0e7c1e-0f7a-4b3e-9c55-0000000b0009}\"; protocol = \"tcp\";"
                          " port = 9; direction = \"outbound\"; }" : "",
             grants > 0 ? ", \"bulk\"" : "");
    fwx_policy *pol = NULL;
    fwx_config_error err;
    memset(&err, 0, sizeof err);
    hr = fwx_policy_load_string(policy, "kperm policy", &pol, &err);
    if (FWX_FAILED(hr)) {
        fprintf(stderr, "kperm: policy: line %d: %s\n", err.line, err.message);
        return 1;
    }
    hr = fwx_firewall_set_policy(K.fw, pol);
    if (FWX_FAILED(hr)) {
        fprintf(stderr, "kperm: set_policy: %s\n", fwx_err_name(hr));
        return 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    hr = fwx_firewall_set_backend(K.fw, "nft");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (FWX_FAILED(hr)) {
        fprintf(stderr, "kperm: set_backend(\"nft\"): %s (%s)\n", fwx_err_name(hr), fwx_firewall_last_error(K.fw));
        return 1;
    }
    printf("backend_open_ms %.2f\n", (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);

    if (plugin == NULL) {
        struct sockaddr_storage c, gi, srv;
        if (parse_addr(client, 0, &c) != 0 || parse_addr(allow[0], 0, &srv) != 0)
            usage();
        gi = locals[0];
        ((struct sockaddr_in *)&srv)->sin_port = htons(21);
        if (FWX_FAILED(hr = open_session(&c, &gi, &srv, &K.session, &K.ctl))) {
            fprintf(stderr, "kperm: session with a primary connection to port 21: %s\n", fwx_err_name(hr));
            return 1;
        }
        for (int i = 0; i < n_allow; i++) {
            struct sockaddr_storage t;
            if (parse_addr(allow[i], 0, &t) != 0)
                usage();
            clock_gettime(CLOCK_MONOTONIC, &t0);
            hr = IFWXSession_AllowFutureConnect(K.session, (struct sockaddr *)&t, sizeof(struct sockaddr_in), NULL, 0,
                                                FWX_PROTOCOL_TCP, FWX_FLAG_ALLOW_MULTIPLE, &FWX_GUID_NULL, NULL, NULL,
                                                K.ctl, NULL);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (FWX_FAILED(hr)) {
                fprintf(stderr, "kperm: AllowFutureConnect %s: %s\n", allow[i], fwx_err_name(hr));
                return 1;
            }
            printf("allow %s ms %.3f\n", allow[i], (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
        }
    }
    if (grants > 0) {
        /* N other grants outstanding, timed one by one: the set-up latency rows then run with
           them in the table (a set of N + the row's own elements). */
        struct sockaddr_storage gi = locals[0], srv;
        if (parse_addr(bulk_server, 9, &srv) != 0)
            usage();
        double *us = malloc((size_t)grants * sizeof *us);
        if (us == NULL)
            return 1;
        struct timespec a0, a1;
        clock_gettime(CLOCK_MONOTONIC, &a0);
        for (long i = 0; i < grants; i++) {
            int k = (int)(i / PER_SESSION);
            if (i % PER_SESSION == 0) {
                struct sockaddr_storage c;
                char ip[32];
                snprintf(ip, sizeof ip, "10.99.1.%d", 60 + k);
                if (parse_addr(ip, 0, &c) != 0 || FWX_FAILED(hr = open_session(&c, &gi, &srv, &K.bulk[k], &K.bulk_ctl[k]))) {
                    fprintf(stderr, "kperm: bulk session %s: %s\n", ip, fwx_err_name(hr));
                    return 1;
                }
            }
            struct sockaddr_storage t = srv;
            ((struct sockaddr_in *)&t)->sin_port = htons((uint16_t)(20000 + i));
            clock_gettime(CLOCK_MONOTONIC, &t0);
            hr = IFWXSession_AllowFutureConnect(K.bulk[k], (struct sockaddr *)&t, sizeof(struct sockaddr_in), NULL, 0,
                                                FWX_PROTOCOL_TCP, 0, &FWX_GUID_NULL, NULL, NULL, K.bulk_ctl[k], NULL);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (FWX_FAILED(hr)) {
                fprintf(stderr, "kperm: bulk grant %ld: %s (%s)\n", i, fwx_err_name(hr), fwx_firewall_last_error(K.fw));
                return 1;
            }
            us[i] = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
        }
        clock_gettime(CLOCK_MONOTONIC, &a1);
        qsort(us, (size_t)grants, sizeof *us, cmp_double);
        printf("grants %ld\ngrants_add_p50_us %.1f\ngrants_add_p99_us %.1f\ngrants_add_total_ms %.1f\n", grants,
               us[grants / 2], us[(size_t)((double)grants * 0.99)],
               (a1.tv_sec - a0.tv_sec) * 1e3 + (a1.tv_nsec - a0.tv_nsec) / 1e6);
        free(us);
    }
    /* The grants the core holds, and what the backend reports as in the kernel. */
    const fwx_backend *b = fwx_backend_find("nft");
    printf("backend %s\n", b ? b->name : "?");
    uv_signal_init(&K.loop, &K.sigterm);
    uv_signal_start(&K.sigterm, on_signal, SIGTERM);
    uv_signal_init(&K.loop, &K.sigint);
    uv_signal_start(&K.sigint, on_signal, SIGINT);
    uv_timer_init(&K.loop, &K.deadline);
    uv_timer_start(&K.deadline, on_deadline, (uint64_t)(seconds * 1000), 0);
    printf("ready\n");
    fflush(stdout);
    uv_run(&K.loop, UV_RUN_DEFAULT);
    /* Bounded: whatever is left (the firewall closed above) gets a few more turns. */
    for (int i = 0; i < 100 && uv_loop_alive(&K.loop); i++)
        uv_run(&K.loop, UV_RUN_NOWAIT);
    uv_walk(&K.loop, close_walk, NULL);
    uv_run(&K.loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(&K.loop);
    printf("closed %s\n", rc == 0 ? "clean" : "with handles left");
    return 0;
}
