package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"
)

// Namespace deletion as in kube-apiserver: a namespace with the "kubernetes"
// finalizer in spec.finalizers is first marked Terminating (creating objects
// in it is refused from then on), a small controller deletes everything in
// it, removes the finalizer and deletes the namespace.

const namespaceFinalizer = corev1.FinalizerKubernetes

// namespaceREST overrides Delete of the namespaces storage.
type namespaceREST struct {
	*REST
}

func (r *namespaceREST) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	obj, err := r.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, false, err
	}
	ns := obj.(*corev1.Namespace)
	if options == nil {
		options = &metav1.DeleteOptions{}
	}
	if options.Preconditions != nil {
		if options.Preconditions.UID != nil && *options.Preconditions.UID != ns.UID {
			return nil, false, apierrors.NewConflict(corev1.Resource("namespaces"), name,
				fmt.Errorf("precondition failed: UID in precondition: %v, UID in object meta: %v", *options.Preconditions.UID, ns.UID))
		}
		if options.Preconditions.ResourceVersion != nil && *options.Preconditions.ResourceVersion != ns.ResourceVersion {
			return nil, false, apierrors.NewConflict(corev1.Resource("namespaces"), name,
				fmt.Errorf("precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *options.Preconditions.ResourceVersion, ns.ResourceVersion))
		}
	}
	if !hasFinalizer(ns) {
		return r.REST.Delete(ctx, name, deleteValidation, options)
	}
	if ns.DeletionTimestamp != nil && ns.Status.Phase == corev1.NamespaceTerminating {
		return ns, false, nil // already terminating
	}
	if deleteValidation != nil {
		if err := deleteValidation(ctx, ns); err != nil {
			return nil, false, err
		}
	}
	key, err := r.Store.KeyFunc(ctx, name)
	if err != nil {
		return nil, false, err
	}
	out := &corev1.Namespace{}
	preconditions := storage.Preconditions{UID: &ns.UID, ResourceVersion: &ns.ResourceVersion}
	err = r.Store.Storage.GuaranteedUpdate(ctx, key, out, false, &preconditions,
		storage.SimpleUpdate(func(existing runtime.Object) (runtime.Object, error) {
			n := existing.(*corev1.Namespace)
			if n.DeletionTimestamp == nil {
				now := metav1.Now()
				zero := int64(0)
				n.DeletionTimestamp = &now
				n.DeletionGracePeriodSeconds = &zero
			}
			n.Status.Phase = corev1.NamespaceTerminating
			return n, nil
		}), len(options.DryRun) > 0, nil)
	if err != nil {
		return nil, false, err
	}
	return out, false, nil
}

func hasFinalizer(ns *corev1.Namespace) bool {
	for _, f := range ns.Spec.Finalizers {
		if f == namespaceFinalizer {
			return true
		}
	}
	return false
}

// finalize removes the "kubernetes" finalizer and deletes the namespace.
func (r *namespaceREST) finalize(ctx context.Context, name string) error {
	ctx = genericapirequest.WithNamespace(ctx, "")
	key, err := r.Store.KeyFunc(ctx, name)
	if err != nil {
		return err
	}
	out := &corev1.Namespace{}
	err = r.Store.Storage.GuaranteedUpdate(ctx, key, out, false, nil,
		storage.SimpleUpdate(func(existing runtime.Object) (runtime.Object, error) {
			n := existing.(*corev1.Namespace)
			var keep []corev1.FinalizerName
			for _, f := range n.Spec.Finalizers {
				if f != namespaceFinalizer {
					keep = append(keep, f)
				}
			}
			n.Spec.Finalizers = keep
			return n, nil
		}), false, nil)
	if err != nil {
		return err
	}
	if len(out.Spec.Finalizers) > 0 {
		return nil // someone else's finalizer: theirs to remove
	}
	_, _, err = r.REST.Delete(ctx, name, rest.ValidateAllObjectFunc, &metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// runNamespaceCleanup empties terminating namespaces, once a second.
func runNamespaceCleanup(ctx context.Context, r *namespaceREST, namespaces corelisters.NamespaceLister, disc discovery.DiscoveryInterface, dyn dynamic.Interface) {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		all, err := namespaces.List(labels.Everything())
		if err != nil {
			return
		}
		var resources []schema.GroupVersionResource
		for _, ns := range all {
			if ns.DeletionTimestamp == nil || !hasFinalizer(ns) {
				continue
			}
			if resources == nil {
				if resources, err = deletableNamespacedResources(disc); err != nil {
					klog.Errorf("namespace cleanup: discovery: %v", err)
					return
				}
			}
			if emptyNamespace(ctx, dyn, resources, ns.Name) {
				if err := r.finalize(ctx, ns.Name); err != nil {
					klog.Errorf("namespace cleanup: finalizing %s: %v", ns.Name, err)
				}
			}
		}
	}, time.Second)
}

func deletableNamespacedResources(disc discovery.DiscoveryInterface) ([]schema.GroupVersionResource, error) {
	lists, err := disc.ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return nil, err
	}
	var out []schema.GroupVersionResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, res := range l.APIResources {
			verbs := sets.New[string](res.Verbs...)
			if verbs.Has("list") && verbs.Has("delete") {
				out = append(out, gv.WithResource(res.Name))
			}
		}
	}
	return out, nil
}

// emptyNamespace deletes what is left in the namespace; true once nothing is.
func emptyNamespace(ctx context.Context, dyn dynamic.Interface, resources []schema.GroupVersionResource, ns string) bool {
	empty := true
	background := metav1.DeletePropagationBackground
	for _, gvr := range resources {
		list, err := dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			if !apierrors.IsNotFound(err) && !apierrors.IsMethodNotSupported(err) {
				klog.V(2).Infof("namespace cleanup: listing %s in %s: %v", gvr, ns, err)
				empty = false
			}
			continue
		}
		deleted := false
		for _, item := range list.Items {
			if item.GetDeletionTimestamp() != nil {
				continue // waiting for its finalizers
			}
			err := dyn.Resource(gvr).Namespace(ns).Delete(ctx, item.GetName(), metav1.DeleteOptions{PropagationPolicy: &background})
			if err != nil && !apierrors.IsNotFound(err) {
				klog.V(2).Infof("namespace cleanup: deleting %s %s/%s: %v", gvr, ns, item.GetName(), err)
			}
			deleted = true
		}
		if deleted {
			list, err = dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		}
		if err != nil || len(list.Items) > 0 {
			empty = false
		}
	}
	return empty
}
