package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	k8sresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
)

// simulate registers n simulated nodes with the controller and runs their
// pods with a fake runtime: every pod bound to one of them is reported
// Running and Ready at once. It is for measuring the controller, scheduler
// and API at thousands of nodes on one machine, as kubemark does.
func simulate(ctx context.Context, ctl *client.Client, prefix string, n int, lease time.Duration, log *slog.Logger) error {
	names := make([]string, n)
	regs := make([]*api.NodeRegistration, n)
	for i := range n {
		names[i] = fmt.Sprintf("%s-%05d", prefix, i)
		node := nodeObject(names[i], fmt.Sprintf("10.%d.%d.%d", 128+i/65536, (i/256)%256, i%256), map[string]string{"keelson.dev/simulated": "true"})
		node.Status.Capacity = corev1.ResourceList{
			corev1.ResourceCPU: k8sresource.MustParse("32"), corev1.ResourceMemory: k8sresource.MustParse("128Gi"), corev1.ResourcePods: k8sresource.MustParse("250")}
		node.Status.Allocatable = node.Status.Capacity.DeepCopy()
		regs[i] = &api.NodeRegistration{Node: node}
	}
	parallel := func(f func(i int) error) error {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			first error
		)
		next := make(chan int)
		for range 16 {
			wg.Go(func() {
				for i := range next {
					if err := f(i); err != nil {
						mu.Lock()
						first = errors.Join(first, err)
						mu.Unlock()
					}
				}
			})
		}
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
			}
		}
		close(next)
		wg.Wait()
		return first
	}
	if err := parallel(func(i int) error { _, err := ctl.Register(ctx, regs[i]); return err }); err != nil {
		return fmt.Errorf("register simulated nodes: %w", err)
	}
	log.Info("simulated nodes registered", "nodes", n)
	simulated := make(map[string]bool, n)
	for _, name := range names {
		simulated[name] = true
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		eachTick(ctx, lease, func() bool {
			if err := parallel(func(i int) error { return ctl.RenewLease(ctx, names[i]) }); err != nil && ctx.Err() == nil {
				log.Warn("renew simulated leases", "err", err)
			}
			return true
		})
	})
	// Follow all pods; report those bound to a simulated node as running.
	var idx uint64
	for ctx.Err() == nil {
		list, err := ctl.Pods(ctx, client.PodQuery{Index: idx, Wait: 5 * time.Minute})
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("follow pods", "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		idx = list.Index
		var todo []*corev1.Pod
		for i := range list.Items {
			p := &list.Items[i]
			if simulated[p.Spec.NodeName] && p.Status.Phase != corev1.PodRunning {
				todo = append(todo, p)
			}
		}
		var rw sync.WaitGroup
		next := make(chan *corev1.Pod)
		for range 16 {
			rw.Go(func() {
				for p := range next {
					if err := ctl.ReportPod(ctx, p.Spec.NodeName, runningPod(p)); err != nil && ctx.Err() == nil {
						log.Debug("report simulated pod", "pod", p.Namespace+"/"+p.Name, "err", err)
					}
				}
			})
		}
		for _, p := range todo {
			next <- p
		}
		close(next)
		rw.Wait()
	}
	wg.Wait()
	return nil
}

// runningPod is p as a fake runtime reports it: every container running
// and ready.
func runningPod(p *corev1.Pod) *corev1.Pod {
	c := *p
	now := metav1.Now()
	c.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &now, HostIP: "10.128.0.1", PodIP: "10.129.0.1",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue}}}
	for _, ct := range p.Spec.Containers {
		c.Status.ContainerStatuses = append(c.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ct.Name, Image: ct.Image, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
	}
	return &c
}
