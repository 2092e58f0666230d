from django.urls import path

from tests.contrib.django.project.todos import views

urlpatterns = [
    path("lists/<int:list_id>/todos/", views.TodoListView.as_view()),
    path("todos/<int:pk>/", views.TodoDetailView.as_view()),
    path("todos/<int:pk>/live/", views.TodoLiveView.as_view()),
    path("ordered/<int:list_id>/", views.OrderedTodoListView.as_view()),
    path("memos/", views.MemoListView.as_view()),
    path("viewset/", views.TodoViewSet.as_view({"get": "list", "post": "create"})),
    path("viewset/<int:pk>/", views.TodoViewSet.as_view({"get": "retrieve"})),
]
