// Package multihost tests QCluster's election with real `qcluster agent`
// processes on real (namespaced) hosts: every agent runs in a Linux network
// namespace of its own, the hosts are wired to a bridge by veth pairs, and
// faults are made the way they happen on real machines: kill -9, network
// partitions, paused processes (SIGSTOP), rolling restarts, latency
// (tc netem), a firewall that rejects a live leader's peer port with TCP
// resets (nftables), and a leader that leaves the cluster (POST
// /v1/self/leave) and comes back with its data deleted, joining as a new
// member.
//
// The tests are behind the build tag multihost and need root and iproute2
// (ip, and tc for the latency scenario), and nft (nftables) for the reject
// scenario. Run them with
//
//	go test -tags multihost -count=1 -v ./test/multihost/
//
// or with .ci/multihost.sh, which installs iproute2 and nftables when
// they are missing and skips the suite with a printed reason when it
// cannot run. Without root,
// or where `ip netns add` fails, the tests skip and say why.
//
// # Topology
//
// Each cluster gets its own namespaces, named qcmh<pid>-<n>-<role>, so that
// parallel runs never collide and a stale run's namespaces (whose pid is
// gone) are swept at the next start:
//
//	switch ns  (…-sw):  bridge br0 (the data network, 10.213.0.0/24)
//	                    bridge brp (the far side of a partition)
//	                    d<i>: the switch end of host i's data link
//	                    m<i>: host i's management link, 10.213.(100+i).1/24
//	host ns    (…-h<i>): eth0  10.213.0.(i+1)/24  (data; peers talk here)
//	                    mgmt0 10.213.(100+i).2/24 (management; the monitor)
//
// The root network namespace is not touched: the test process reaches the
// agents' HTTP API over the management links from a dialer thread that has
// entered the switch namespace. The switch does not route, so hosts can
// reach each other only over the data network, and a partition is made by
// moving data links between bridges in the switch namespace:
// `ip link set d<i> nomaster` isolates host i, `master brp` moves it to the
// other side, `master br0` heals. Frames across the cut are dropped
// silently, as a real network split does, while the monitor still sees
// every host. Latency is `tc qdisc replace dev eth0 root netem delay 100ms
// 50ms` (an add that may be repeated) inside every host, so each packet
// between peers is delayed once. Each agent listens on 0.0.0.0:7000 and
// advertises its eth0 address to its peers.
//
// Where the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM unset, as on
// this project's CI machines), the latency cluster's data network is a
// user-space switch in the test process instead: each host's eth0 is a TAP
// device, and the switch forwards every frame a host sends after a delay
// drawn uniformly from [100ms-50ms, 100ms+50ms], as netem does (frames may
// be reordered); it makes partitions too. -multihost.switch=user runs every
// cluster on it, -multihost.switch=kernel none (the latency test then
// skips).
//
// Traffic stays inside these namespaces: the only addresses used are the
// test hosts' own.
//
// # What is measured
//
// A monitor asks every agent for GET /v1/status every few milliseconds
// (-multihost.sample, default 5ms) over keep-alive connections with short
// time-outs, and records for each sample when the request was sent and when
// the answer arrived. From those samples each scenario reports:
//
//   - split-brain instants: pairs of samples of two different peers that both
//     say is_leader=true and whose [sent, received] intervals overlap, so
//     the two claims may have been true at the same instant (must be 0);
//   - lease overlaps: a peer saying is_leader=true at an instant that lies
//     surely inside the lease another peer claimed earlier (its
//     lease_remaining_ms), which the leader lease forbids (must be 0);
//   - term conflicts: two peers claiming leadership of the same term (must
//     be 0);
//   - term regressions: a peer answering with a lower term than before,
//     across restarts too (must be 0);
//   - fault → new leader: from the fault to the first answer at which every
//     reachable peer of the majority names the same new leader and that
//     leader says is_leader. Bound: 2s for each fail-over with the seed's
//     timings; under netem (heartbeat 100ms, election timeout 1s, round
//     trips up to 300ms) 5s for the median and 10s for each, since a split
//     vote costs another 1-2s round;
//   - election rounds: the terms each fail-over used;
//   - spurious changes: leaderships (terms with a peer claiming is_leader)
//     beyond those the faults called for (must be 0 in the idle scenario).
//
// The kill -9 scenarios also print the fail-over's p50 and p99 over their
// trials, and how many survivors' raft transports proved the killed
// leader's process gone (its stream ended without a goodbye and a connect
// to its port was refused; every one must, under netem too). The reject
// scenario (3 peers) adds an nftables table in the leader's host that
// answers every TCP packet to or from its peer port on eth0 with a TCP
// reset, both ways (UDP with an ICMP port unreachable): the live leader's
// streams are reset and a connect to it is refused. That is no proof that
// its process is gone: the survivors must agree on a new leader no sooner
// than the election timeout less a heartbeat interval (less 20% for the
// tick and the sampling) after the cut, and no survivor's transport may log
// the proof.
//
// In the 3-peer kill -9, partition and SIGSTOP scenarios a writer in the
// test process PUTs keys w/<scenario>/0, w/<scenario>/1, ... (one at a
// time, at most one every 10ms, each key once with a value of its own) to
// the agents in turn, with a 1s time-out. A 200 is an acknowledged write;
// a time-out or a connection lost after sending is an unknown outcome
// (either way is allowed); an error answer or a refused connection is a
// refusal. Once the faults are healed and a leader is agreed, every
// acknowledged key is read back (linearizable GET) from every running
// agent and must hold its value, and every key listed under the prefix
// must hold the value it was written with. The counts and the write
// latency (p50, p99, max of the acknowledged writes) are logged.
//
// A table of all scenarios is printed at the end of the run.
//
// # Knobs
//
//	-multihost.bin PATH   a prebuilt qcluster binary (env QCLUSTER_BIN);
//	                      default: go build ./cmd/qcluster
//	-multihost.idle D     the idle period under netem (env
//	                      QCLUSTER_MULTIHOST_IDLE); default 60s with
//	                      QCLUSTER_MULTIHOST_FULL=1, else 15s
//	-multihost.reps N     repetitions of each fault (env
//	                      QCLUSTER_MULTIHOST_REPS); default 3, 10 with FULL
//	-multihost.sample D   the monitor's sampling period (default 5ms)
//	-multihost.logdir DIR keep the agents' logs there (env
//	                      QCLUSTER_MULTIHOST_LOGDIR) instead of a temp dir
//	-multihost.loglevel L the agents' --log-level (env
//	                      QCLUSTER_MULTIHOST_LOGLEVEL; debug shows raft's
//	                      election messages)
//	-multihost.switch S   auto, kernel or user (env
//	                      QCLUSTER_MULTIHOST_SWITCH); see Topology
//	-multihost.trace      print every status transition the monitor saw
//
// Without root, iproute2 or working namespaces the tests skip, unless
// QCLUSTER_MULTIHOST_REQUIRED is set (.ci/multihost.sh sets it as root on
// Linux): then they fail. Every scenario also fails if the monitor left a
// peer unasked for over maxSampleIdle (150ms): a stalled sampler could hide
// an overlap.
package multihost
