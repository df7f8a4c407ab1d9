package main

import (
	"sort"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdinformers "k8s.io/apiextensions-apiserver/pkg/client/informers/externalversions/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// installCRDGroupDiscovery lists the groups of CustomResourceDefinitions in
// the unaggregated /apis document. (In kube-apiserver kube-aggregator does
// that through APIServices; /apis/<group>[/<version>] and the aggregated
// discovery document are already maintained by the apiextensions library.)
func installCRDGroupDiscovery(server *genericapiserver.GenericAPIServer, crds crdinformers.CustomResourceDefinitionInformer) error {
	var mu sync.Mutex
	listed := map[string]bool{}
	resync := func() {
		mu.Lock()
		defer mu.Unlock()
		all, err := crds.Lister().List(labels.Everything())
		if err != nil {
			klog.Errorf("listing CRDs for discovery: %v", err)
			return
		}
		versions := map[string]map[string]bool{}
		for _, crd := range all {
			for _, v := range crd.Spec.Versions {
				if !v.Served {
					continue
				}
				if versions[crd.Spec.Group] == nil {
					versions[crd.Spec.Group] = map[string]bool{}
				}
				versions[crd.Spec.Group][v.Name] = true
			}
		}
		for group, vs := range versions {
			var gvs []metav1.GroupVersionForDiscovery
			for v := range vs {
				gvs = append(gvs, metav1.GroupVersionForDiscovery{GroupVersion: group + "/" + v, Version: v})
			}
			sort.Slice(gvs, func(i, j int) bool {
				return version.CompareKubeAwareVersionStrings(gvs[i].Version, gvs[j].Version) > 0
			})
			server.DiscoveryGroupManager.AddGroup(metav1.APIGroup{Name: group, Versions: gvs, PreferredVersion: gvs[0]})
			listed[group] = true
		}
		for group := range listed {
			if _, ok := versions[group]; !ok {
				server.DiscoveryGroupManager.RemoveGroup(group)
				delete(listed, group)
			}
		}
	}
	_, err := crds.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { resync() },
		UpdateFunc: func(interface{}, interface{}) { resync() },
		DeleteFunc: func(interface{}) { resync() },
	})
	return err
}

var _ = apiextensionsv1.SchemeGroupVersion
