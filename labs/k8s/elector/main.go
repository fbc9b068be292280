// vipr-elector: client-go's Lease leader election configured exactly as kube-vip v1.2.3
// configures it (pkg/election/election.go: a resourcelock.LeaseLock whose identity is the
// node name, ReleaseOnCancel, LeaseDuration/RenewDeadline/RetryPeriod in seconds), so vipr's
// tests contend for a Lease with the same code kube-vip runs instead of an imitation of it.
// Built by labs/k8s/apiserver.sh from the client-go vendored in Debian's kubernetes source.
//
// Prints one line per event on stdout: "leading", "stopped", "leader IDENTITY".
// SIGTERM/SIGINT cancel the election (the Lease is released, as kube-vip does on shutdown);
// SIGKILL leaves it to expire.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	namespace := flag.String("namespace", "kube-system", "the Lease's namespace")
	name := flag.String("name", "plndr-cp-lock", "the Lease's name")
	identity := flag.String("identity", "", "holder identity (kube-vip: the node name)")
	lease := flag.Int("lease-duration", 5, "vip_leaseduration, seconds")
	renew := flag.Int("renew-deadline", 3, "vip_renewdeadline, seconds")
	retry := flag.Int("retry-period", 1, "vip_retryperiod, seconds")
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeconfig:", err)
		os.Exit(2)
	}
	client := kubernetes.NewForConfigOrDie(cfg)

	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; cancel() }()

	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: *name, Namespace: *namespace},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: *identity},
	}
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		ReleaseOnCancel: true,
		LeaseDuration:   time.Duration(*lease) * time.Second,
		RenewDeadline:   time.Duration(*renew) * time.Second,
		RetryPeriod:     time.Duration(*retry) * time.Second,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { fmt.Println("leading") },
			OnStoppedLeading: func() { fmt.Println("stopped") },
			OnNewLeader:      func(id string) { fmt.Println("leader", id) },
		},
	})
}
