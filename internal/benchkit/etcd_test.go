package benchkit

import "testing"

func TestParseEtcdStatus(t *testing.T) {
	// What etcd 3.4.23 answers to POST /v3/maintenance/status.
	leads := `{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"1","raft_term":"2"},` +
		`"version":"3.4.23","dbSize":"20480","leader":"13668033151171901709","raftIndex":"4","raftTerm":"2","raftAppliedIndex":"4","dbSizeInUse":"16384"}`
	st, err := ParseEtcdStatus([]byte(leads))
	if err != nil || st.Self != 13668033151171901709 || st.Leader != st.Self || st.Term != 2 {
		t.Errorf("ParseEtcdStatus = %+v, %v", st, err)
	}
	// Without a leader the field is left out, and etcd adds an error.
	none := `{"header":{"member_id":"7","raft_term":"5"},"raftTerm":"5","errors":["etcdserver: no leader"]}`
	if st, err := ParseEtcdStatus([]byte(none)); err != nil || st.Leader != 0 || st.Self != 7 || st.Term != 5 {
		t.Errorf("ParseEtcdStatus(no leader) = %+v, %v", st, err)
	}
	for _, bad := range []string{`{}`, `not json`, `{"header":{"member_id":"x"}}`, `{"header":{"member_id":"7"},"leader":"-1"}`} {
		if _, err := ParseEtcdStatus([]byte(bad)); err == nil {
			t.Errorf("ParseEtcdStatus(%s) accepted", bad)
		}
	}
}

func TestEtcdVersion(t *testing.T) {
	out := "etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.19.8\n"
	if v := EtcdVersion(out); v != "3.4.23" || MajorMinor(v) != "3.4" {
		t.Errorf("EtcdVersion = %q", v)
	}
	if v := EtcdVersion("garbage"); v != "?" {
		t.Errorf("EtcdVersion(garbage) = %q", v)
	}
}
