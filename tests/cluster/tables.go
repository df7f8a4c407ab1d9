package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// tableConvertor prints the columns `kubectl get` shows for a built-in kind
// (the same columns as kube-apiserver's printers, minus what needs controllers).
type tableConvertor struct {
	columns []metav1.TableColumnDefinition
	cells   func(obj runtime.Object) []interface{}
	// complete: columns and cells are the whole row (no Name first, no Age last).
	complete bool
}

func (t tableConvertor) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	fn := func(obj runtime.Object) error {
		m, err := meta.Accessor(obj)
		if err != nil {
			return err
		}
		cells := t.cells(obj)
		if !t.complete {
			cells = append([]interface{}{m.GetName()}, cells...)
			cells = append(cells, age(m.GetCreationTimestamp()))
		}
		table.Rows = append(table.Rows, metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Object: obj}})
		return nil
	}
	if meta.IsListType(object) {
		if err := meta.EachListItem(object, fn); err != nil {
			return nil, err
		}
	} else if err := fn(object); err != nil {
		return nil, err
	}
	if l, err := meta.ListAccessor(object); err == nil {
		table.ResourceVersion = l.GetResourceVersion()
		table.Continue = l.GetContinue()
		table.RemainingItemCount = l.GetRemainingItemCount()
	} else if c, err := meta.CommonAccessor(object); err == nil {
		table.ResourceVersion = c.GetResourceVersion()
	}
	if opt, ok := tableOptions.(*metav1.TableOptions); !ok || !opt.NoHeaders {
		table.ColumnDefinitions = t.columns
		if !t.complete {
			table.ColumnDefinitions = append([]metav1.TableColumnDefinition{{Name: "Name", Type: "string", Format: "name"}}, t.columns...)
			table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{Name: "Age", Type: "string"})
		}
	}
	return table, nil
}

func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

func col(name, typ string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ}
}

func wideCol(name, typ string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Priority: 1}
}

var namespaceTable = tableConvertor{
	columns: []metav1.TableColumnDefinition{col("Status", "string")},
	cells: func(obj runtime.Object) []interface{} {
		return []interface{}{string(obj.(*corev1.Namespace).Status.Phase)}
	},
}

var secretTable = tableConvertor{
	columns: []metav1.TableColumnDefinition{col("Type", "string"), col("Data", "integer")},
	cells: func(obj runtime.Object) []interface{} {
		s := obj.(*corev1.Secret)
		return []interface{}{string(s.Type), int64(len(s.Data))}
	},
}

var configMapTable = tableConvertor{
	columns: []metav1.TableColumnDefinition{col("Data", "integer")},
	cells: func(obj runtime.Object) []interface{} {
		c := obj.(*corev1.ConfigMap)
		return []interface{}{int64(len(c.Data) + len(c.BinaryData))}
	},
}

var serviceAccountTable = tableConvertor{
	columns: []metav1.TableColumnDefinition{col("Secrets", "integer")},
	cells: func(obj runtime.Object) []interface{} {
		return []interface{}{int64(len(obj.(*corev1.ServiceAccount).Secrets))}
	},
}

var leaseTable = tableConvertor{
	columns: []metav1.TableColumnDefinition{col("Holder", "string")},
	cells: func(obj runtime.Object) []interface{} {
		l := obj.(*coordinationv1.Lease)
		holder := ""
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		return []interface{}{holder}
	},
}

var deploymentTable = tableConvertor{
	columns: []metav1.TableColumnDefinition{col("Ready", "string"), col("Up-to-date", "integer"), col("Available", "integer"),
		wideCol("Containers", "string"), wideCol("Images", "string"), wideCol("Selector", "string")},
	cells: func(obj runtime.Object) []interface{} {
		d := obj.(*appsv1.Deployment)
		desired := int32(0)
		if d.Spec.Replicas != nil {
			desired = *d.Spec.Replicas
		}
		var names, images []string
		for _, c := range d.Spec.Template.Spec.Containers {
			names = append(names, c.Name)
			images = append(images, c.Image)
		}
		selector := ""
		if d.Spec.Selector != nil {
			selector = metav1.FormatLabelSelector(d.Spec.Selector)
		}
		return []interface{}{fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, desired), int64(d.Status.UpdatedReplicas),
			int64(d.Status.AvailableReplicas), strings.Join(names, ","), strings.Join(images, ","), selector}
	},
}

// eventTable: the columns of kube-apiserver's event printer.
var eventTable = tableConvertor{
	complete: true,
	columns: []metav1.TableColumnDefinition{col("Last Seen", "string"), col("Type", "string"), col("Reason", "string"),
		col("Object", "string"), wideCol("Subobject", "string"), wideCol("Source", "string"), col("Message", "string"),
		wideCol("First Seen", "string"), wideCol("Count", "integer"), wideCol("Name", "string")},
	cells: func(obj runtime.Object) []interface{} {
		e := obj.(*corev1.Event)
		first, last := e.FirstTimestamp, e.LastTimestamp
		count := e.Count
		if e.Series != nil {
			last = metav1.Time{Time: e.Series.LastObservedTime.Time}
			count = e.Series.Count
		} else if count == 0 {
			count = 1
		}
		if first.IsZero() {
			first = metav1.Time{Time: e.EventTime.Time}
		}
		if last.IsZero() {
			last = first
		}
		object := strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
		source := e.Source.Component
		if source == "" {
			source = e.ReportingController
		}
		if e.Source.Host != "" {
			source += ", " + e.Source.Host
		}
		return []interface{}{age(last), e.Type, e.Reason, object, e.InvolvedObject.FieldPath, source,
			strings.TrimSpace(e.Message), age(first), int64(count), e.Name}
	},
}
