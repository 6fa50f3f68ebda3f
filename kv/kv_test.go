package kv_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/leakcheck"
	"github.com/qcluster/qcluster/kv"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// fake is a Backend in memory: what a user's test of code written against
// kv.KV can give kv.New. It records the writes that reach it.
type fake struct {
	mu      sync.Mutex
	keys    map[string]kv.KeyValue
	rev     uint64
	writes  int
	lock    map[string]uint64 // name -> token held
	lockCh  map[string]chan struct{}
	session map[uint64]bool
	sessCh  chan struct{}
	ctx     context.Context
}

func newFake(ctx context.Context) *fake {
	return &fake{keys: map[string]kv.KeyValue{}, lock: map[string]uint64{}, lockCh: map[string]chan struct{}{},
		session: map[uint64]bool{}, sessCh: make(chan struct{}), ctx: ctx}
}

func (f *fake) Get(_ context.Context, key string, _ bool) (kv.KeyValue, bool, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.keys[key]
	return v, ok, f.rev, nil
}

func (f *fake) List(context.Context, string, bool) ([]kv.KeyValue, uint64, error) {
	return nil, f.rev, nil
}

func (f *fake) Put(_ context.Context, key string, value []byte, w kv.Write) (kv.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	cur, ok := f.keys[key]
	if w.Compare && (ok && cur.ModRevision != w.ModRevision || !ok && w.ModRevision != 0) {
		return kv.Result{Revision: f.rev, KV: &cur}, kv.ErrCompareFailed
	}
	f.rev++
	v := kv.KeyValue{Key: key, Value: value, ModRevision: f.rev, Session: w.Session}
	f.keys[key] = v
	return kv.Result{Revision: f.rev, KV: &v}, nil
}

func (f *fake) Delete(_ context.Context, key string, _ kv.Write) (kv.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	delete(f.keys, key)
	f.rev++
	return kv.Result{Revision: f.rev}, nil
}

func (f *fake) Watch(context.Context, string, uint64) (<-chan kv.Event, error) {
	return nil, &kv.CompactedError{Oldest: 7}
}

func (f *fake) GrantSession(_ context.Context, ttl time.Duration) (kv.SessionInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.session[1] = true
	return kv.SessionInfo{ID: 1, TTL: ttl}, nil
}

func (f *fake) RenewSession(_ context.Context, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.session[id] {
		return kv.ErrSessionNotFound
	}
	return nil
}

func (f *fake) RevokeSession(_ context.Context, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.session[id] {
		return kv.ErrSessionNotFound
	}
	delete(f.session, id)
	close(f.sessCh)
	f.sessCh = make(chan struct{})
	return nil
}

func (f *fake) Sessions(context.Context, bool) ([]kv.SessionInfo, error) { return nil, nil }

func (f *fake) SessionAlive(id uint64) (bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.session[id], f.sessCh
}

func (f *fake) Lock(_ context.Context, name string, _ uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	f.lock[name] = f.rev
	f.lockCh[name] = make(chan struct{})
	return f.rev, nil
}

// steal deletes the lock's key behind its holder's back.
func (f *fake) steal(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.lock, name)
	close(f.lockCh[name])
}

func (f *fake) LockLost(ctx context.Context, name string, _ uint64) error {
	f.mu.Lock()
	ch := f.lockCh[name]
	f.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fake) Unlock(_ context.Context, name string, token uint64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lock[name] != token {
		return false, nil
	}
	delete(f.lock, name)
	close(f.lockCh[name])
	return true, nil
}

func (f *fake) Context() context.Context { return f.ctx }

// TestHandleOverFake: the handle checks keys and options before the
// backend sees them, maps an absent key to ErrKeyNotFound, and builds
// locks and sessions over any Backend.
func TestHandleOverFake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newFake(ctx)
	s := kv.New(f, nil)

	for _, tt := range []struct {
		key  string
		opts []kv.WriteOption
		want error
	}{
		{"", nil, kv.ErrInvalidKey},
		{"\x00lock/x", nil, kv.ErrInvalidKey},
		{"a\x00b", nil, kv.ErrInvalidKey},
		{strings.Repeat("k", kv.MaxKeySize+1), nil, kv.ErrTooLarge},
		{"k", []kv.WriteOption{kv.Ephemeral(), kv.InSessionID(3)}, kv.ErrInvalidKey},
	} {
		if _, err := s.Put(ctx, tt.key, nil, tt.opts...); !errors.Is(err, tt.want) {
			t.Errorf("Put(%.10q) = %v, want %v", tt.key, err, tt.want)
		}
	}
	if _, err := s.Delete(ctx, "k", kv.Ephemeral()); !errors.Is(err, kv.ErrInvalidKey) {
		t.Errorf("Delete with Ephemeral = %v", err)
	}
	if f.writes != 0 {
		t.Fatalf("%d refused writes reached the backend", f.writes)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, kv.ErrKeyNotFound) {
		t.Fatalf("Get(absent) = %v", err)
	}
	res, err := s.Put(ctx, "k", []byte("v"), kv.IfAbsent())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "k", []byte("w"), kv.IfModRevision(res.Revision+1)); !errors.Is(err, kv.ErrCompareFailed) {
		t.Fatalf("stale compare = %v", err)
	}
	var ce *kv.CompactedError
	if _, err := s.Watch(ctx, "", 1); !errors.As(err, &ce) || !errors.Is(err, kv.ErrCompacted) || ce.Oldest != 7 {
		t.Fatalf("Watch = %v", err)
	}

	if _, err := s.Lock(ctx, ""); !errors.Is(err, kv.ErrInvalidKey) {
		t.Fatalf("Lock(\"\") = %v", err)
	}
	l, err := s.Lock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	f.steal("job")
	<-l.Lost()
	if err := l.Unlock(ctx); !errors.Is(err, kv.ErrLockLost) {
		t.Fatalf("Unlock of a lost lock = %v", err)
	}
	l2, err := s.Lock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	<-l2.Lost()

	se, err := s.NewSession(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeSession(ctx, se.ID()); err != nil {
		t.Fatal(err)
	}
	<-se.Done() // the keep-alive saw the session go
	if err := se.Close(ctx); err != nil {
		t.Fatalf("Close of a revoked session = %v", err)
	}
	if err := s.RenewSession(ctx, 0); !errors.Is(err, kv.ErrSessionNotFound) {
		t.Fatalf("RenewSession(0) = %v", err)
	}
}
