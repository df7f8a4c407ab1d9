package main

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
)

// scaleREST serves deployments/scale (autoscaling/v1 Scale), so that
// `kubectl scale` works. Nothing acts on the new replica count.
type scaleREST struct {
	store *genericregistry.Store
}

var _ rest.Patcher = &scaleREST{}
var _ rest.GroupVersionKindProvider = &scaleREST{}

func (r *scaleREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return autoscalingv1.SchemeGroupVersion.WithKind("Scale")
}
func (r *scaleREST) New() runtime.Object { return &autoscalingv1.Scale{} }
func (r *scaleREST) Destroy()            {}

func (r *scaleREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.store.Get(ctx, name, options)
	if err != nil {
		return nil, apierrors.NewNotFound(appsv1.Resource("deployments/scale"), name)
	}
	return scaleOf(obj.(*appsv1.Deployment)), nil
}

func (r *scaleREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	obj, _, err := r.store.Update(ctx, name, &scaleUpdatedObjectInfo{name: name, reqObjInfo: objInfo},
		func(ctx context.Context, obj runtime.Object) error {
			if createValidation == nil {
				return nil
			}
			return createValidation(ctx, scaleOf(obj.(*appsv1.Deployment)))
		},
		func(ctx context.Context, obj, old runtime.Object) error {
			if updateValidation == nil {
				return nil
			}
			return updateValidation(ctx, scaleOf(obj.(*appsv1.Deployment)), scaleOf(old.(*appsv1.Deployment)))
		},
		false, options)
	if err != nil {
		return nil, false, err
	}
	return scaleOf(obj.(*appsv1.Deployment)), false, nil
}

func (r *scaleREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return rest.NewDefaultTableConvertor(appsv1.Resource("deployments/scale")).ConvertToTable(ctx, object, tableOptions)
}

func scaleOf(d *appsv1.Deployment) *autoscalingv1.Scale {
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	selector := ""
	if d.Spec.Selector != nil {
		if s, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil {
			selector = s.String()
		}
	}
	return &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{
			Name:              d.Name,
			Namespace:         d.Namespace,
			UID:               d.UID,
			ResourceVersion:   d.ResourceVersion,
			CreationTimestamp: d.CreationTimestamp,
		},
		Spec:   autoscalingv1.ScaleSpec{Replicas: replicas},
		Status: autoscalingv1.ScaleStatus{Replicas: d.Status.Replicas, Selector: selector},
	}
}

// scaleUpdatedObjectInfo turns an update of the Scale into an update of the Deployment.
type scaleUpdatedObjectInfo struct {
	name       string
	reqObjInfo rest.UpdatedObjectInfo
}

func (i *scaleUpdatedObjectInfo) Preconditions() *metav1.Preconditions {
	return i.reqObjInfo.Preconditions()
}

func (i *scaleUpdatedObjectInfo) UpdatedObject(ctx context.Context, oldObj runtime.Object) (runtime.Object, error) {
	d, ok := oldObj.DeepCopyObject().(*appsv1.Deployment)
	if !ok || d == nil {
		return nil, apierrors.NewNotFound(appsv1.Resource("deployments/scale"), i.name)
	}
	obj, err := i.reqObjInfo.UpdatedObject(ctx, scaleOf(d))
	if err != nil {
		return nil, err
	}
	scale, ok := obj.(*autoscalingv1.Scale)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected input object type to be Scale, but %T", obj))
	}
	if scale.Spec.Replicas < 0 {
		return nil, apierrors.NewInvalid(autoscalingv1.SchemeGroupVersion.WithKind("Scale").GroupKind(), i.name,
			field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), scale.Spec.Replicas, "must be greater than or equal to 0")})
	}
	if scale.ResourceVersion != "" {
		// Optimistic concurrency: the store compares it with the stored object.
		d.ResourceVersion = scale.ResourceVersion
	}
	replicas := scale.Spec.Replicas
	d.Spec.Replicas = &replicas
	return d, nil
}
