/*
 * fwx - the "nft" backend's nftables text, in one place.
 *
 * The table (one per gateway instance, "inet fwx_<name>") holds, per address family (4, 6):
 *
 *   once4/once6    set  client . target . l4proto . port   one connection each: the forward
 *                                                           rule admits a key only while it is
 *                                                           not in used4/used6, and adds it there
 *   used4/used6    set  (same key)                          one-shot keys the packet path used;
 *                                                           fwx deletes both elements (nft.c)
 *   allow4/allow6  set  (same key)                          any number until removed or expired
 *                                                           (FWX_FLAG_ALLOW_MULTIPLE)
 *   dnat4/dnat6    map  gateway . l4proto . port : address . port
 *                                                           bound ports (BindForClient) and
 *                                                           redirect ports (RedirectConnections)
 *   snat4/snat6    map  client . target . l4proto . port : gateway address
 *                                                           source NAT to a given gateway address
 *                                                           (ProxyExternalAddress)
 *   masq4/masq6    set  client . target . l4proto . port   source NAT to the outgoing interface's
 *                                                           address (FWX_FLAG_PROXY_MODE)
 *
 * Why one-shot takes two sets and the packet path deletes nothing: an element the forward rule
 * deleted (`delete @once4`) is only marked dead and lingers until the set's garbage collection;
 * adding the same key again before that inserts another entry in the same hash bucket, and
 * after ~16 of them (a server handing out one data port again and again) the kernel refuses
 * the add with EBUSY. Now the forward rule only adds the key to used4 (a key already there is
 * not admitted again: one connection), and fwx deletes the once and the used element from the
 * control plane when the flow's conntrack NEW event comes (or when the grant goes), which
 * unlinks them at once: the same key can be granted again right away, without a wait.
 *
 * Keys of the permission sets are the tuple the forward hook sees, that is after destination
 * NAT: a bound port's permission is "server . client . tcp . client's port". Every element
 * carries the grant's remaining time when it has one (flags timeout), so the kernel drops it
 * on time even if fwx is gone.
 *
 *   pub4/pub6, pubok4/6, pubmasq4/6   publishing rules (listen): DNAT, forward accept, masquerade
 *   user4/user6    set  client . target . l4proto . port   user-mode permissions: REDIRECTed to
 *                                                           fwx's listener (TCP: intercept.c; UDP,
 *                                                           IPv4: udp.c, same port number)
 *   refused4/6     set  client . target . l4proto . port   policy-forwarded flows the core refused
 *                                                           after the fact (FWX_NFT_REFUSED_SETS)
 *
 * The policy (compile.c) lives in the regular chains pol_net, pol_rules, pol_nat and intercept
 * and in generation-named sets (N<gen>_*, G<gen>_*, P<gen>_*, I<gen>), all replaced in one
 * batch on every policy change.
 *
 * The forward chain's policy is drop: a connection through the gateway needs an element or a
 * compiled policy rule. Replies and related packets ride "ct state established,related". A
 * connection admitted by a one-shot element gets the ct mark bit FWX_NFT_CT_ADMITTED so that
 * a retransmission of its first packet (still "ct state new", its key already in used) is
 * not dropped.
 *
 * Chains are base chains of this table only; other tables' chains on the same hooks still run
 * (an accept here does not override a drop elsewhere).
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_NFT_RULES_H
#define FWX_NFT_RULES_H

/* The ct mark bit of connections a permission element admitted (one-shot or multiple): the
   conntrack events of these flows become the core's secondary connections (nft.c). */
#define FWX_NFT_CT_ADMITTED "0x20000000"
#define FWX_NFT_CT_ADMITTED_BIT 0x20000000u
/* With ADMITTED: a primary connection the compiled policy accepted (forwarded by the kernel),
   reported to the core as a kernel-mode primary connection. */
#define FWX_NFT_CT_POLICY "0x04000000"
#define FWX_NFT_CT_POLICY_BIT 0x04000000u
#define FWX_NFT_CT_POLICY_ACCEPT "ct mark set ct mark or 0x24000000 accept"

/* The ct mark bit of UDP flows through a bound port without FWX_FLAG_BIDIRECTIONAL: datagrams
   reach the client, nothing goes back. */
#define FWX_NFT_CT_ONEWAY "0x40000000"

/* How often the kernel reaps the expired elements of a timed set (`gc-interval`): every 10 s,
   not its default of every second. Expiry itself does not wait for it: an element past its
   timeout stops matching at once; the pass only frees it. But each pass walks every element
   of the set (timed or not) without yielding the CPU (rhashtable walk under RCU; with this
   kernel's PREEMPT_NONE nothing preempts it), ~70 us per 1,000 elements here, so with
   10,000 grants outstanding a 0.7 ms stall came every second, on whichever CPU ran it, in
   the way of fwx's set-up (bench/README.md, issue 13 part 3). What lingers longer
   instead: elements that expired unused (fwx's own delete of an expired element finds none);
   at the default 60 s grant timeout a key cannot expire often enough within 10 s to crowd
   its hash bucket, and 65,536 (the sets' size) takes 6,500 expiries a second. */
#define FWX_NFT_GC "gc-interval 10s; "

/* One family's sets and maps. %c is the family digit ('4' or '6'); %s the address type. */
#define FWX_NFT_SETS_FMT                                                                                       \
    "  set once%c { type %s . %s . inet_proto . inet_service; flags timeout; " FWX_NFT_GC "size 65536;\n"                    \
    "    comment \"one connection each: client . target . l4proto . port, until its key is in used\"; }\n"     \
    "  set used%c { type %s . %s . inet_proto . inet_service; flags dynamic; size 65536;\n"                    \
    "    comment \"one-shot keys the forward rule used; fwx deletes them with the once element\"; }\n"          \
    "  set allow%c { type %s . %s . inet_proto . inet_service; flags timeout; " FWX_NFT_GC "size 65536;\n"                   \
    "    comment \"connections until removed or expired (ALLOW_MULTIPLE)\"; }\n"                                \
    "  map dnat%c { type %s . inet_proto . inet_service : %s . inet_service; flags timeout; size 65536;\n"      \
    "    comment \"bound and redirect ports: gateway . l4proto . port : destination . port\"; }\n"              \
    "  map snat%c { type %s . %s . inet_proto . inet_service : %s; flags timeout; size 65536;\n"               \
    "    comment \"source NAT to a given gateway address (ProxyExternalAddress)\"; }\n"                         \
    "  set masq%c { type %s . %s . inet_proto . inet_service; flags timeout; " FWX_NFT_GC "size 65536;\n"                    \
    "    comment \"source NAT to the outgoing interface's address (PROXY_MODE)\"; }\n"                         \
    "  map pub%c { type %s . inet_proto . inet_service : %s . inet_service; size 65536;\n"                    \
    "    comment \"publishing rules: listen address . l4proto . port : server . port\"; }\n"                    \
    "  set pubok%c { type %s . inet_proto . inet_service; size 65536;\n"                                       \
    "    comment \"published servers: server . l4proto . port (after the DNAT)\"; }\n"                          \
    "  set pubmasq%c { type %s . inet_proto . inet_service; size 65536;\n"                                     \
    "    comment \"published servers reached from the gateway's address (full_proxy)\"; }\n"                      \
    "  set user%c { type %s . %s . inet_proto . inet_service; flags timeout; " FWX_NFT_GC "size 65536;\n"                    \
    "    comment \"user-mode permissions: client . target . l4proto . port, redirected into fwx\"; }\n"          \
    "  set oneway%c { type %s . %s . inet_proto . inet_service; flags timeout; " FWX_NFT_GC "size 65536;\n"                  \
    "    comment \"UDP bound ports without BIDIRECTIONAL: peer . client . 17 . port, no datagram back\"; }\n"

/* One family's rules in each chain. %s is the family keyword ("ip" or "ip6"), %c the digit.
   The tuple expression is the key of every set above. */
#define FWX_NFT_TUPLE(f) f " saddr . " f " daddr . meta l4proto . th dport"

/* The whole table, added in one batch at open. Arguments: table name, pid, then the sets of
   each family and the rules (see nft.c: ruleset_text). */
#define FWX_NFT_TABLE_HEAD_FMT                                                                                 \
    "table inet %s {\n"                                                                                        \
    "  comment \"fwx gateway (pid %ld): secondary connections carried by the kernel\"\n"

/* prerouting, nat: destination NAT of bound and redirect ports. */
#define FWX_NFT_PREROUTING                                                                                     \
    "  chain prerouting {\n"                                                                                   \
    "    type nat hook prerouting priority dstnat; policy accept;\n"                                           \
    "    comment \"bound and redirect ports: destination NAT from the dnat maps\"\n"                            \
    "    meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @dnat4\n"                 \
    "    meta l4proto { tcp, udp } dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6\n"              \
    "    meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @pub4\n"                  \
    "    meta l4proto { tcp, udp } dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub6\n"               \
    "  }\n"                                                                                                   \
    "  chain intercept {\n"                                                                                   \
    "    comment \"filter-bound ports (compiled from the policy): redirected into fwx's user-mode path\"\n"    \
    "  }\n"

/* prerouting, nat, before the DNAT maps: connections fwx's user-mode path must carry. The
   argument is fwx's interception listener port; without a listener the chain only jumps. */
#define FWX_NFT_PREROUTING_INTERCEPT_HEAD                                                                      \
    "  chain prerouting_intercept {\n"                                                                        \
    "    type nat hook prerouting priority dstnat - 10; policy accept;\n"
#define FWX_NFT_PREROUTING_INTERCEPT_USER_FMT                                                                  \
    "    meta l4proto { tcp, udp } " FWX_NFT_TUPLE("ip") " @user4 redirect to :%u"                               \
    " comment \"user-mode permissions: a data filter or NO_KERNEL_MODE (UDP: udp.c, same port number)\"\n"
#define FWX_NFT_PREROUTING_INTERCEPT_USER6_FMT                                                                 \
    "    meta l4proto { tcp, udp } " FWX_NFT_TUPLE("ip6") " @user6 redirect to :%u"                              \
    " comment \"user-mode permissions (IPv6; UDP: udp.c, same port number)\"\n"
#define FWX_NFT_PREROUTING_INTERCEPT_TAIL                                                                      \
    "    jump intercept\n"                                                                                    \
    "  }\n"

/* Flows the policy let the kernel forward but the core refused after the fact (nft.c,
   kernel_flow_filtered: a handler attached a data filter the kernel cannot run). Their conntrack
   entry is killed; an element here (client . target . l4proto . port, timed) drops the new
   entry the flow's next packet would make, which the policy would otherwise forward again. */
#define FWX_NFT_REFUSED_SECS 120
#define FWX_NFT_REFUSED_SETS                                                                                   \
    "  set refused4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags timeout; " FWX_NFT_GC "size 65536;\n"      \
    "    comment \"flows refused after the kernel forwarded their first packet\"; }\n"                        \
    "  set refused6 { type ipv6_addr . ipv6_addr . inet_proto . inet_service; flags timeout; " FWX_NFT_GC "size 65536;\n"      \
    "    comment \"the same, IPv6\"; }\n"

/* input, filter: fwx's interception listener takes only what the redirect rules above deliver
  . It listens on the wildcard address because REDIRECT delivers to the
   address of whichever interface the flow came in on (or loopback, for local redirection), so
   the bind cannot say it; the kernel does: a connection to its port that was not redirected
   (no DNAT in its conntrack status) is dropped before it is accepted, and so costs no log line.
   UDP too: a UDP socket on the same port number serves redirected UDP flows where the backend
   carries them.
   Arguments: the IPv4 listener's port; the IPv6 one's (a second line, or none). */
#define FWX_NFT_INPUT_INTERCEPT_HEAD                                                                           \
    "  chain input_intercept {\n"                                                                              \
    "    type filter hook input priority filter; policy accept;\n"                                              \
    "    comment \"fwx's interception listener: only redirected connections reach it\"\n"
#define FWX_NFT_INPUT_INTERCEPT_FMT                                                                            \
    "    meta nfproto %s meta l4proto { tcp, udp } th dport %u ct status and dnat == 0 drop\n"
#define FWX_NFT_INPUT_INTERCEPT_TAIL "  }\n"

/* forward, filter: what may pass the gateway. */
#define FWX_NFT_FORWARD                                                                                        \
    "  chain forward {\n"                                                                                      \
    "    type filter hook forward priority filter; policy drop;\n"                                             \
    "    comment \"permissions: new connections need an element; replies ride conntrack; the rest is dropped\"\n" \
    "    meta l4proto udp ct direction reply ct mark and " FWX_NFT_CT_ONEWAY " == " FWX_NFT_CT_ONEWAY " drop\n"  \
    "    ct state established,related accept\n"                                                                \
    "    ct mark and " FWX_NFT_CT_ADMITTED " == " FWX_NFT_CT_ADMITTED " accept\n"                              \
    "    ct state new meta l4proto udp " FWX_NFT_TUPLE("ip") " @oneway4 ct mark set ct mark or " FWX_NFT_CT_ONEWAY "\n" \
    "    ct state new meta l4proto udp " FWX_NFT_TUPLE("ip6") " @oneway6 ct mark set ct mark or " FWX_NFT_CT_ONEWAY "\n" \
    "    ct state new meta l4proto { tcp, udp } " FWX_NFT_TUPLE("ip") " @once4 " FWX_NFT_TUPLE("ip") " != @used4" \
    " add @used4 { " FWX_NFT_TUPLE("ip") " } ct mark set ct mark or " FWX_NFT_CT_ADMITTED " accept\n"          \
    "    ct state new meta l4proto { tcp, udp } " FWX_NFT_TUPLE("ip6") " @once6 " FWX_NFT_TUPLE("ip6") " != @used6" \
    " add @used6 { " FWX_NFT_TUPLE("ip6") " } ct mark set ct mark or " FWX_NFT_CT_ADMITTED " accept\n"         \
    "    ct state new meta l4proto { tcp, udp } " FWX_NFT_TUPLE("ip") " @allow4"                                  \
    " ct mark set ct mark or " FWX_NFT_CT_ADMITTED " accept\n"                                                   \
    "    ct state new meta l4proto { tcp, udp } " FWX_NFT_TUPLE("ip6") " @allow6"                                 \
    " ct mark set ct mark or " FWX_NFT_CT_ADMITTED " accept\n"                                                   \
    "    ct state new ct status dnat ip daddr . meta l4proto . th dport @pubok4 accept\n"                       \
    "    ct state new ct status dnat ip6 daddr . meta l4proto . th dport @pubok6 accept\n"                      \
    "    ct state new meta l4proto { tcp, udp } " FWX_NFT_TUPLE("ip") " @refused4 drop\n"                      \
    "    ct state new meta l4proto { tcp, udp } " FWX_NFT_TUPLE("ip6") " @refused6 drop\n"                     \
    "    ct state new jump pol_net\n"                                                                         \
    "  }\n"                                                                                                   \
    "  chain pol_net {\n"                                                                                      \
    "    comment \"compiled from the policy: network relationships, then goto pol_rules\"\n"                  \
    "  }\n"                                                                                                   \
    "  chain pol_rules {\n"                                                                                   \
    "    comment \"compiled from the policy: access rules in file order, first match wins\"\n"                \
    "  }\n"

/* postrouting, nat: source NAT of admitted connections that ask for it. */
#define FWX_NFT_POSTROUTING                                                                                    \
    "  chain postrouting {\n"                                                                                  \
    "    type nat hook postrouting priority srcnat; policy accept;\n"                                          \
    "    comment \"source NAT: to a given gateway address (snat maps) or the outgoing address (masq sets)\"\n"   \
    "    meta l4proto { tcp, udp } snat ip to " FWX_NFT_TUPLE("ip") " map @snat4\n"                               \
    "    meta l4proto { tcp, udp } snat ip6 to " FWX_NFT_TUPLE("ip6") " map @snat6\n"                             \
    "    meta l4proto { tcp, udp } " FWX_NFT_TUPLE("ip") " @masq4 masquerade\n"                                   \
    "    meta l4proto { tcp, udp } " FWX_NFT_TUPLE("ip6") " @masq6 masquerade\n"                                  \
    "    ct status dnat ip daddr . meta l4proto . th dport @pubmasq4 masquerade\n"                             \
    "    ct status dnat ip6 daddr . meta l4proto . th dport @pubmasq6 masquerade\n"                            \
    "    jump pol_nat\n"                                                                                      \
    "  }\n"                                                                                                   \
    "  chain pol_nat {\n"                                                                                     \
    "    comment \"compiled from the policy: masquerade for nat relationships\"\n"                           \
    "  }\n"

/* What a stopped gateway leaves behind, unless the host chose
   kernel_open_on_stop: its table replaced in one batch by this one, which drops every
   forwarded packet (established flows included: nothing inspects them any more) and leaves the
   gateway's own input and output alone. The next start replaces it in one batch again, so the
   forward hook is never without a drop policy between two runs. The operator opens the
   gateway by hand with `nft delete table inet <table>`. Arguments: table name, pid. The
   comment (at most 128 bytes) says how to open it; "(pid " is what a start reads back. */
#define FWX_NFT_CLOSED_FMT                                                                                     \
    "table inet %s {\n"                                                                                        \
    "  comment \"fwx gateway stopped (pid %ld): forwarding closed; nft delete table opens it\"\n"              \
    "  chain forward {\n"                                                                                      \
    "    type filter hook forward priority filter; policy drop;\n"                                             \
    "    comment \"fwx is not running: every forwarded packet is dropped\"\n"                                   \
    "  }\n"                                                                                                   \
    "}\n"
/* The comment's mark of a closed table (a clean stop, not a crash). */
#define FWX_NFT_CLOSED_TAG "fwx gateway stopped"

#endif /* FWX_NFT_RULES_H */
